//! `flashguard up` in a temporary directory: its database and incident
//! file there, every address picked by the OS.

use super::Part;

pub struct Up {
    pub part: Part,
    pub storefront: String,
    pub gateway_admin: String,
    pub monitor: String,
    pub token: String,
    pub control: String,
    pub dir: tempfile::TempDir,
}

impl Up {
    /// Starts the stack; `extra` is appended to its TOML config.
    pub async fn start(shops: usize, backups: usize, extra: &str) -> Up {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("stack.toml");
        let db = format!("sqlite://{}", dir.path().join("stack.db").display());
        let incidents = dir.path().join("incidents.sqlite");
        let logs = dir.path().join("logs");
        std::fs::write(
            &config,
            format!(
                "shops = {shops}\nbackups = {backups}\ndatabase_url = \"{db}\"\n\
                 incidents_db = \"{}\"\nlogs_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\n\
                 gateway_admin_listen = \"127.0.0.1:0\"\ncontrol_listen = \"127.0.0.1:0\"\n\
                 monitor_listen = \"127.0.0.1:0\"\n{extra}\n",
                incidents.display(),
                logs.display()
            ),
        )
        .unwrap();
        let mut part = Part::launch(&["up", "--config", &config.display().to_string()], None);
        let storefront = part.expect_line("storefront on ").await;
        let gateway_admin = part.expect_line("gateway admin on ").await;
        let gateway_admin = gateway_admin
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let monitor = part.expect_line("monitor on ").await;
        let token = part.expect_line("admin token ").await;
        let control = part.expect_line("control on ").await;
        Up {
            part,
            storefront,
            gateway_admin,
            monitor,
            token,
            control,
            dir,
        }
    }

    /// Runs `flashguard drill` with this scenario against the stack, in
    /// the background; its report goes to `dir/NAME`.
    pub fn drill(&self, name: &str, scenario: &str) -> Part {
        self.drill_with(name, scenario, &[])
    }

    /// `drill`, with `extra` arguments.
    pub fn drill_with(&self, name: &str, scenario: &str, extra: &[&str]) -> Part {
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, scenario).unwrap();
        let report = self.dir.path().join(name);
        let (path, report) = (path.display().to_string(), report.display().to_string());
        let mut args = vec![
            "drill",
            "--target",
            &self.storefront,
            "--scenario",
            &path,
            "--control",
            &self.control,
            "--monitor",
            &self.monitor,
            "--report-dir",
            &report,
        ];
        args.extend_from_slice(extra);
        Part::launch(&args, Some(&self.token))
    }
}
