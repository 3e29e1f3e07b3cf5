//! The waiting room on real processes: a gateway with a tiny admission
//! rate in front of a real shop. Customers are told their place and let in
//! in the order they came; a forged ticket earns nothing; sold out reaches
//! those still waiting; a million tickets cost the gateway almost nothing;
//! two gateways with one key agree on tickets.

mod support;

use std::time::{Duration, Instant};

use flashguard_ticket::Ticket;
use serde_json::{json, Value};
use support::gateway::{metric_sum, Gateway};
use support::{client, put_product, sqlite_db, Shop, ADMIN_TOKEN};

const KEY: &str = "a-room-key-for-the-tests";

/// gateway.toml with `room` as its `[waiting_room]`.
fn room_config(room: &str) -> String {
    format!("trusted_proxies = [\"127.0.0.1\"]\n[waiting_room]\nkey = \"{KEY}\"\n{room}\n")
}

async fn room_gateway(shop: &Shop, room: &str) -> (Gateway, tempfile::TempDir) {
    gateway_with(&room_config(room), &format!("shop={}", shop.addr())).await
}

/// A gateway with `config` as its gateway.toml, in front of `backend`
/// (NAME=ADDR).
async fn gateway_with(config: &str, backend: &str) -> (Gateway, tempfile::TempDir) {
    Gateway::start_with_config(config, &["--backend", backend]).await
}

/// What the room said to one visit of an API client.
#[derive(Debug)]
struct Visit {
    status: u16,
    ticket: Option<String>,
    body: Value,
}

/// A customer at `ip` asks for `path` as an API client, with `ticket`.
async fn visit(gateway: &str, path: &str, ip: &str, ticket: Option<&str>) -> Visit {
    let mut request = client()
        .get(format!("{gateway}{path}"))
        .header("x-forwarded-for", ip)
        .header("accept", "application/json");
    if let Some(ticket) = ticket {
        request = request.header("flashguard-ticket", ticket);
    }
    let response = request.send().await.expect("the gateway answers");
    let status = response.status().as_u16();
    let ticket = response
        .headers()
        .get("flashguard-ticket")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.json().await.unwrap_or(Value::Null);
    Visit {
        status,
        ticket,
        body,
    }
}

async fn shop_with_item(stock: i64) -> (Shop, support::SqliteDb) {
    let db = sqlite_db();
    let shop = Shop::start(&db.url).await;
    let response = put_product(
        &shop.url,
        "hot-1",
        json!({ "name": "Hot", "price_cents": 100, "stock": stock }),
    )
    .await;
    assert!(response.status().is_success());
    (shop, db)
}

/// A shop with `stock` of `hot-1` behind a gateway whose room is always
/// on, lets in `per_s` customers a second, and has `more` settings.
struct Sale {
    shop: Shop,
    gateway: Gateway,
    _db: support::SqliteDb,
    _dir: tempfile::TempDir,
}

async fn sale(stock: i64, per_s: f64, more: &str) -> Sale {
    let (shop, _db) = shop_with_item(stock).await;
    let room = format!(
        "activation = \"always\"\nadmit_per_s = {per_s}\nmin_admit_per_s = {}\n\
         adaptive = false\n{more}",
        per_s / 2.0
    );
    let (gateway, _dir) = room_gateway(&shop, &room).await;
    Sale {
        shop,
        gateway,
        _db,
        _dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_are_told_their_place_and_let_in_in_the_order_they_came() {
    let sold = sale(100, 2.0, "").await;
    let gateway = &sold.gateway;
    // Eight customers, 50 ms apart, each from their own network.
    let mut tickets = Vec::new();
    let mut positions = Vec::new();
    for n in 0..8 {
        let ip = format!("10.{n}.0.1");
        let first = visit(&gateway.url, "/api/products/hot-1", &ip, None).await;
        // Not a guarded path: through, no ticket needed.
        assert_eq!(first.status, 200);
        let first = visit(&gateway.url, "/api/orders/none", &ip, None).await;
        let ticket = first.ticket.clone().expect("every visitor gets a ticket");
        if first.status == 429 {
            assert_eq!(first.body["status"], "waiting", "{:?}", first.body);
            positions.push(vec![first.body["position"].as_u64().unwrap()]);
        } else {
            positions.push(vec![0]);
        }
        tickets.push((ip, ticket));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        positions.iter().filter(|p| p[0] > 0).count() >= 6,
        "at two a second, most of eight wait: {positions:?}"
    );
    // They come back every 200 ms until each is let in; positions only go
    // down, and the order of turns is the order of arrival.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut admitted: Vec<Option<Ticket>> = vec![None; tickets.len()];
    while admitted.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "not everyone was let in: {positions:?}"
        );
        for (n, (ip, ticket)) in tickets.iter_mut().enumerate() {
            if admitted[n].is_some() {
                continue;
            }
            let again = visit(&gateway.url, "/api/orders/none", ip, Some(ticket)).await;
            if let Some(fresh) = &again.ticket {
                *ticket = fresh.clone();
            }
            if again.status == 429 {
                let position = again.body["position"].as_u64().unwrap();
                let last = *positions[n].last().unwrap();
                assert!(
                    position <= last || last == 0,
                    "{n}: {position} after {last}"
                );
                positions[n].push(position);
            } else {
                // Through to the shop (which has no such order).
                assert_eq!(again.status, 404, "{:?}", again.body);
                admitted[n] = Some(Ticket::read(ticket).unwrap());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stamps: Vec<Ticket> = admitted.into_iter().map(Option::unwrap).collect();
    for pair in stamps.windows(2) {
        assert!(pair[0].issued_ms < pair[1].issued_ms);
        assert!(
            pair[0].admitted_ms <= pair[1].admitted_ms,
            "turns in order of arrival: {stamps:?}"
        );
    }
    // About two a second: the last of eight waited at least two seconds.
    let last = stamps.last().unwrap();
    assert!(last.admitted_ms - last.issued_ms >= 2_000, "{last:?}");
    // Once in, the ticket passes without waiting.
    let (ip, ticket) = &tickets[0];
    let inside = visit(&gateway.url, "/api/orders/none", ip, Some(ticket)).await;
    assert_eq!(inside.status, 404);
    let metrics = gateway.metrics().await;
    assert!(metric_sum(&metrics, "gateway_room_admitted_total", &[]) >= 6.0);
    assert_eq!(metric_sum(&metrics, "gateway_room_on", &[]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_copied_ticket_earns_no_place_ahead() {
    let sold = sale(100, 0.2, "").await;
    let gateway = &sold.gateway;
    let mut last_position = 0;
    let mut genuine = None;
    for n in 0..5 {
        let ip = format!("10.{n}.0.1");
        let answer = visit(&gateway.url, "/api/orders/none", &ip, None).await;
        if answer.status == 429 {
            last_position = answer.body["position"].as_u64().unwrap();
            genuine = Some((ip, answer.ticket.unwrap()));
        }
        // Each in their own tenth of a second (the line's granularity).
        tokio::time::sleep(Duration::from_millis(110)).await;
    }
    let (ip, genuine) = genuine.expect("someone waits at 0.2 a second");
    // Its arrival moved an hour earlier: the signature no longer matches.
    let mut forged = Ticket::read(&genuine).unwrap();
    forged.issued_ms -= 3_600_000;
    let forged = forged.seal(&flashguard_ticket::Key {
        id: 7,
        secret: b"a guess at the key".to_vec(),
    });
    let answer = visit(&gateway.url, "/api/orders/none", &ip, Some(&forged)).await;
    assert_eq!(answer.status, 429);
    assert_eq!(
        answer.body["position"].as_u64().unwrap(),
        last_position + 1,
        "a forged ticket is a first visit: the back of the line"
    );
    let fresh = Ticket::read(answer.ticket.as_deref().unwrap()).unwrap();
    assert!(fresh.issued_ms > Ticket::read(&genuine).unwrap().issued_ms);
    tokio::time::sleep(Duration::from_millis(110)).await;
    // The genuine ticket copied to another network: no place either.
    let copied = visit(
        &gateway.url,
        "/api/orders/none",
        "10.99.0.1",
        Some(&genuine),
    )
    .await;
    assert_eq!(copied.body["position"].as_u64().unwrap(), last_position + 2);
    // Its holder keeps theirs, neither better nor worse for refreshing.
    let kept = visit(&gateway.url, "/api/orders/none", &ip, Some(&genuine)).await;
    assert!(kept.body["position"].as_u64().unwrap() <= last_position);
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "gateway_room_tickets_refused_total", &["forged"]),
        1.0
    );
    assert_eq!(
        metric_sum(&metrics, "gateway_room_tickets_refused_total", &["copied"]),
        1.0
    );
    // A client that drops its cookie to start again runs out of tickets.
    let mut refused = 0;
    for _ in 0..70 {
        let again = visit(&gateway.url, "/api/orders/none", "10.200.0.1", None).await;
        if again.body["error"] == "too_many_tickets" {
            refused += 1;
        }
    }
    assert!(
        refused >= 10,
        "60 tickets a minute per network: {refused} refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sold_out_reaches_everyone_still_waiting() {
    let sold = sale(1, 0.2, "skus = [\"hot-1\"]").await;
    let (shop, gateway) = (&sold.shop, &sold.gateway);
    let waiting = line_up(gateway).await;
    // The last unit goes (ordered at the shop directly).
    let response = client()
        .post(format!("{}/api/orders", shop.url))
        .header("idempotency-key", "the-last-one")
        .json(&json!({ "sku": "hot-1", "quantity": 1, "customer": "early" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    // Everyone still waiting is told on their next visit, within the
    // room's poll of the stock (a second).
    everyone_waiting_is_told(gateway, &waiting, "sold_out", "sold-out").await;
}

/// Five customers from five networks come; those put in line (at least
/// three), with their tickets.
async fn line_up(gateway: &Gateway) -> Vec<(String, String)> {
    let mut waiting = Vec::new();
    for n in 0..5 {
        let ip = format!("10.{n}.0.1");
        let answer = visit(&gateway.url, "/api/orders/none", &ip, None).await;
        if answer.status == 429 {
            waiting.push((ip, answer.ticket.unwrap()));
        }
    }
    assert!(waiting.len() >= 3);
    waiting
}

/// Each customer in `waiting` (client address, ticket) is told `status`
/// (409) on a visit within 5 s, the room's change is in the gateway's
/// events, and a browser gets a page with the element `page_id`.
async fn everyone_waiting_is_told(
    gateway: &Gateway,
    waiting: &[(String, String)],
    status: &str,
    page_id: &str,
) {
    let since = Instant::now();
    for (ip, ticket) in waiting {
        loop {
            let answer = visit(&gateway.url, "/api/orders/none", ip, Some(ticket)).await;
            if answer.status == 409 {
                assert_eq!(answer.body["status"], status, "{:?}", answer.body);
                break;
            }
            assert_eq!(answer.status, 429, "{:?}", answer.body);
            assert!(
                since.elapsed() < Duration::from_secs(5),
                "{status} never reached {ip}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let events = gateway.events().await;
    assert!(
        events
            .iter()
            .any(|e| e["backend"] == "waiting-room" && e["state"] == status),
        "{events:?}"
    );
    let page = client()
        .get(format!("{}/", gateway.url))
        .header("x-forwarded-for", "10.50.0.1")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains(&format!("id=\"{page_id}\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sale_ending_with_stock_left_reaches_everyone_still_waiting() {
    let sold = sale(100, 0.2, "skus = [\"hot-1\"]").await;
    let (shop, gateway) = (&sold.shop, &sold.gateway);
    let waiting = line_up(gateway).await;
    // The sale's window closes now, with 100 units left.
    let closed = time::OffsetDateTime::now_utc();
    let at = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let response = put_product(
        &shop.url,
        "hot-1",
        json!({ "name": "Hot", "price_cents": 100, "stock": 100,
                "sale_starts_at": at(closed - time::Duration::hours(1)),
                "sale_ends_at": at(closed) }),
    )
    .await;
    assert!(response.status().is_success());
    everyone_waiting_is_told(gateway, &waiting, "sale_ended", "sale-ended").await;
}

/// `POST /admin/room/rehearse`: `customers` first visits, without sockets.
async fn rehearse_arrivals(gateway: &Gateway, customers: Value) -> reqwest::Response {
    client()
        .post(format!("{}/admin/room/rehearse", gateway.admin_url))
        .bearer_auth(ADMIN_TOKEN)
        .timeout(Duration::from_secs(300))
        .json(&json!({ "customers": customers }))
        .send()
        .await
        .unwrap()
}

/// The bound README.md documents: a million waiting customers cost the
/// gateway under 8 MiB (the line is counts per tenth of a second).
const MILLION_BOUND_KIB: u64 = 8 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_tickets_cost_the_gateway_almost_nothing() {
    let sold = sale(100, 1.0, "").await;
    let gateway = &sold.gateway;
    // Warm: the first customers through every path, so what is measured
    // next is the crowd, not first allocations.
    for n in 0..20 {
        visit(
            &gateway.url,
            "/api/orders/none",
            &format!("10.{n}.0.1"),
            None,
        )
        .await;
    }
    let before = support::rss_kib(gateway.part.pid());
    let issued: Value = rehearse_arrivals(gateway, json!(1_000_000))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(issued["issued"], 1_000_000, "{issued}");
    let after = support::rss_kib(gateway.part.pid());
    // A real customer now stands behind the million (in a later tenth of
    // a second than the last of them).
    tokio::time::sleep(Duration::from_millis(150)).await;
    let late = visit(&gateway.url, "/api/orders/none", "10.222.0.1", None).await;
    // (Less the few let in meanwhile, at one a second.)
    let position = late.body["position"].as_u64().unwrap();
    assert!(position > 999_000, "{position}");
    let grew = after.saturating_sub(before);
    println!("RSS {before} KiB -> {after} KiB with a million waiting (+{grew} KiB)");
    assert!(grew < MILLION_BOUND_KIB, "+{grew} KiB");
    // Malformed asks change nothing.
    for bad in [json!(0), json!(-1), json!("many")] {
        let refused = rehearse_arrivals(gateway, bad).await;
        assert_eq!(refused.status(), 422);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_with_one_key_agree_on_tickets_and_split_the_rate() {
    let (shop, _db) = shop_with_item(100).await;
    let room = "activation = \"always\"\nadmit_per_s = 0.4\nmin_admit_per_s = 0.2\n\
                adaptive = false\ngateways = 2";
    let (a, _dir_a) = room_gateway(&shop, room).await;
    let (b, _dir_b) = room_gateway(&shop, room).await;
    for gateway in [&a, &b] {
        let public: Value = client()
            .get(format!("{}/waiting-room.json", gateway.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(public["admit_per_s"], 0.2, "each its half: {public}");
    }
    // Places taken at A.
    let mut at_a = Vec::new();
    for n in 0..4 {
        let ip = format!("10.{n}.0.1");
        let answer = visit(&a.url, "/api/orders/none", &ip, None).await;
        at_a.push((ip, answer.ticket.unwrap(), answer.status));
    }
    let (ip, ticket, status) = at_a.last().unwrap().clone();
    assert_eq!(status, 429);
    let issued = Ticket::read(&ticket).unwrap().issued_ms;
    // B reads A's ticket: the same place, not a new one.
    let at_b = visit(&b.url, "/api/orders/none", &ip, Some(&ticket)).await;
    assert_eq!(at_b.status, 429, "{:?}", at_b.body);
    let kept = Ticket::read(at_b.ticket.as_deref().unwrap()).unwrap();
    assert_eq!(kept.issued_ms, issued, "B keeps the arrival A stamped");
    // A customer let in at A passes at B. Four arrivals in one bucket of
    // the line at 0.2/s take up to 20 s: a generous deadline for a loaded
    // machine.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (first_ip, mut first_ticket, _) = at_a[0].clone();
    loop {
        let answer = visit(&a.url, "/api/orders/none", &first_ip, Some(&first_ticket)).await;
        if let Some(fresh) = answer.ticket {
            first_ticket = fresh;
        }
        if answer.status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "never let in at A");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(Ticket::read(&first_ticket).unwrap().admitted_ms > 0);
    let through_b = visit(&b.url, "/api/orders/none", &first_ip, Some(&first_ticket)).await;
    assert_eq!(through_b.status, 404, "let in at A is let in at B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_in_line_sees_its_place_on_a_page_that_refreshes_itself() {
    let sold = sale(100, 1.0, "max_active = 1").await;
    // The first customer takes the one session there is, once let in.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ticket: Option<String> = None;
    loop {
        let first = visit(
            &sold.gateway.url,
            "/api/orders/none",
            "10.9.0.1",
            ticket.as_deref(),
        )
        .await;
        if first.status == 404 {
            break;
        }
        assert_eq!(first.status, 429, "{:?}", first.body);
        assert!(Instant::now() < deadline, "the first customer waited 10 s");
        ticket = first.ticket.or(ticket);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Debian's Chromium, headless, at the storefront: held in line.
    let url = format!("{}/", sold.gateway.url);
    let dom = tokio::task::spawn_blocking(move || support::chromium_dom(&url))
        .await
        .unwrap();
    let position: u64 = dom
        .split(r#"id="position">"#)
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no position on the page: {dom}"));
    assert!(position >= 1, "{dom}");
    assert!(dom.contains(r#"id="eta""#), "{dom}");
    // No JavaScript needed: the page comes back by itself.
    assert!(dom.contains(r#"http-equiv="refresh""#), "{dom}");
    let _ = &sold.shop;
}

/// `POST /admin/reload` after writing `room` as the config's
/// `[waiting_room]`; its JSON.
async fn reload_room(gateway: &Gateway, dir: &tempfile::TempDir, room: &str) -> Value {
    std::fs::write(dir.path().join("gateway.toml"), room_config(room)).unwrap();
    support::gateway::reload(&gateway.admin_url, 200).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_how_fast_the_line_moves_and_keeps_every_place() {
    let (shop, _db) = shop_with_item(100).await;
    let room = |per_s: u32| {
        format!(
            "activation = \"always\"\nadaptive = false\nadmit_per_s = {per_s}\n\
             min_admit_per_s = 1\nmax_active = 100\n"
        )
    };
    let (gateway, dir) = room_gateway(&shop, &room(2)).await;
    // A crowd in line.
    let issued: Value = rehearse_arrivals(&gateway, json!(500))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(issued["issued"], 500, "{issued}");
    let before: Value = gateway.admin_json("/admin/room").await;
    assert_eq!(before["admit_per_s"], 2.0, "{before}");

    // The shops grew: the operator lets customers in faster, at once,
    // without a restart. Nobody loses a place.
    let reloaded = reload_room(&gateway, &dir, &room(40)).await;
    assert_eq!(reloaded["until_restart"], json!([]), "{reloaded}");
    let after: Value = gateway.admin_json("/admin/room").await;
    assert_eq!(after["admit_per_s"], 40.0, "{after}");
    assert!(
        after["waiting"].as_u64().unwrap() + after["active_sessions"].as_u64().unwrap() >= 480,
        "places lost across the reload: {before} -> {after}"
    );
    // What the line is (its event, its mode) is read only at start.
    let moved = reload_room(
        &gateway,
        &dir,
        &format!("{}event = \"another-sale\"\n", room(40)),
    )
    .await;
    assert_eq!(moved["until_restart"], json!(["waiting_room"]), "{moved}");
}

/// A customer the room let in whose request finds the shop full for as
/// long as a request may wait is held back by the room — still in, told
/// to come back — not given the queue's 503; a path the room does not
/// guard still gets the 503, and the customer who comes back is served
/// without queueing in the room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_let_in_who_finds_the_shops_full_is_held_back_not_failed() {
    use tokio::io::AsyncWriteExt;
    let backend = support::gateway::echo_backend().await;
    let config = format!(
        "{}[concurrency]\nadaptive = false\ninitial = 1\nmin = 1\nmax = 1\n\
         [queue]\ntimeout_ms = 200\n",
        room_config(
            "activation = \"always\"\nadmit_per_s = 1000\nadaptive = false\npaths = [\"/slow\", \"/echo\"]"
        )
    );
    let (gateway, _dir) = gateway_with(&config, &format!("echo={backend}")).await;
    let addr = gateway.url.trim_start_matches("http://").to_string();

    // The shop's one slot, held by a request whose answer never ends.
    let mut holder = tokio::net::TcpStream::connect(&addr).await.unwrap();
    holder
        .write_all(b"GET /stall HTTP/1.1\r\nhost: shop\r\n\r\n")
        .await
        .unwrap();
    support::gateway::wait_for_slots(&gateway, 0.0, 1.0).await;

    // A customer on a guarded path: let in (a ticket that says so), then
    // held back by the room when the queue's wait runs out.
    let held = visit(&gateway.url, "/slow", "10.7.0.1", None).await;
    assert_eq!(held.status, 429, "{:?}", held.body);
    assert_eq!(held.body["status"], "waiting", "{:?}", held.body);
    assert_eq!(held.body["held_back"], true, "{:?}", held.body);
    let ticket = held.ticket.expect("a first visit gets its ticket");
    let read = Ticket::read(&ticket).unwrap();
    assert!(read.admitted_ms > 0, "the ticket says the customer is in");
    // A browser gets the room's page, which comes back by itself.
    let page = client()
        .get(format!("{}/slow", gateway.url))
        .header("x-forwarded-for", "10.7.0.2")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["retry-after"], "1");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"id="held-back""#), "{html}");
    assert!(html.contains(r#"http-equiv="refresh""#), "{html}");
    // A browser's form is kept on a page that does not refresh (a refresh
    // is a GET, and the form would be lost): its fields, to post again.
    const FORM: &str = "idempotency_key=k-held-1&customer=ann%40example.com&quantity=2";
    let posted = client()
        .post(format!("{}/echo", gateway.url))
        .header("x-forwarded-for", "10.7.0.1")
        .header("flashguard-ticket", &ticket)
        .header("accept", "text/html")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(FORM)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let html = posted.text().await.unwrap();
    assert!(html.contains(r#"id="held-back""#), "{html}");
    assert!(!html.contains(r#"http-equiv="refresh""#), "{html}");
    let fields = form_fields(&html, "/echo");
    assert_eq!(
        fields,
        [
            ("idempotency_key", "k-held-1"),
            ("customer", "ann@example.com"),
            ("quantity", "2"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    // Not guarded: the queue's own 503.
    let unguarded = client()
        .get(format!("{}/stream", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unguarded.status(), 503);
    assert!(unguarded.text().await.unwrap().contains("queue_timeout"));
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "gateway_room_held_back_total", &[]),
        3.0
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "gateway_shed_total",
            &["reason=\"queue_timeout\""]
        ),
        4.0,
        "the queue shed all four: {metrics}"
    );

    // The slot comes back; the customer comes back with their ticket and
    // is served at once, not put in line again.
    drop(holder);
    support::gateway::wait_for_slots(&gateway, 0.0, 0.0).await;
    let served = visit(&gateway.url, "/slow", "10.7.0.1", Some(&ticket)).await;
    assert_eq!(served.status, 200, "{:?}", served.body);
    // The page's form, sent as the browser sends it: the same form
    // reaches the shop.
    let resent = client()
        .post(format!("{}/echo", gateway.url))
        .header("x-forwarded-for", "10.7.0.1")
        .header("flashguard-ticket", &ticket)
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(resent.status(), 200);
    let echoed: Value = resent.json().await.unwrap();
    assert_eq!(echoed["body_len"], FORM.len(), "{echoed}");
    assert_eq!(
        echoed["headers"]["content-type"], "application/x-www-form-urlencoded",
        "{echoed}"
    );
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "gateway_room_held_back_total", &[]),
        3.0
    );
}

/// The hidden fields of the room page's form that posts to `action`, in
/// order, unescaped.
fn form_fields(html: &str, action: &str) -> Vec<(String, String)> {
    let form = html
        .split(&format!(r#"<form method="post" action="{action}""#))
        .nth(1)
        .and_then(|rest| rest.split_once('>')?.1.split("</form>").next())
        .unwrap_or_else(|| panic!("no form to {action}: {html}"));
    let attribute = |input: &str, name: &str| {
        let value = input
            .split(&format!(r#"{name}=""#))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no {name} in {input}"));
        value
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    };
    form.split("<input ")
        .skip(1)
        .map(|input| (attribute(input, "name"), attribute(input, "value")))
        .collect()
}

/// Customers whose turns came while they were away all come back at once:
/// they go in at the rate, a second's worth at most, and the rest are told
/// to come back in a second, keeping their turn, instead of all reaching
/// the shop together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_whose_turns_came_together_go_in_at_the_rate() {
    let sold = sale(100, 5.0, "").await;
    let url = &sold.gateway.url;
    let mut line = Vec::new();
    for n in 0..20 {
        let ip = format!("10.8.{n}.1");
        let first = visit(url, "/api/orders/none", &ip, None).await;
        if first.status == 429 {
            line.push((ip, first.ticket.expect("a place comes with a ticket")));
        }
    }
    assert!(line.len() >= 15, "{} of 20 waited", line.len());
    // Every turn comes (5 a second) while nobody comes back.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let room: Value = sold.gateway.admin_json("/admin/room").await;
        if room["waiting"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the line never emptied: {room}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // All of them at once.
    let visits = line
        .iter()
        .map(|(ip, ticket)| visit(url, "/api/orders/none", ip, Some(ticket)));
    let first_try = futures::future::join_all(visits).await;
    let through = first_try.iter().filter(|v| v.status == 404).count();
    let told = first_try.iter().filter(|v| v.status == 429).count();
    assert_eq!(through + told, line.len(), "{first_try:?}");
    assert!(
        (1..=6).contains(&through),
        "{through} of {} went in at once at 5 a second",
        line.len()
    );
    let metrics = sold.gateway.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "gateway_room_door_busy_total", &[]),
        told as f64
    );
    // Each comes back when told and goes in, none sent to the back.
    let deadline = Instant::now() + Duration::from_secs(20);
    for (visit_now, (ip, ticket)) in first_try.into_iter().zip(&line) {
        let mut status = visit_now.status;
        let mut ticket = visit_now.ticket.unwrap_or_else(|| ticket.clone());
        while status == 429 {
            assert!(Instant::now() < deadline, "{ip} never went in");
            tokio::time::sleep(Duration::from_millis(200)).await;
            let again = visit(url, "/api/orders/none", ip, Some(&ticket)).await;
            status = again.status;
            ticket = again.ticket.unwrap_or(ticket);
        }
        assert_eq!(status, 404, "{ip}");
    }
    let _ = &sold.shop;
}

/// `count` customers take a place in line, each from their own network.
async fn customers_ahead(gateway: &Gateway, count: usize) {
    for n in 0..count {
        let ahead = visit(
            &gateway.url,
            "/api/orders/none",
            &format!("10.{n}.0.1"),
            None,
        )
        .await;
        assert!(ahead.ticket.is_some(), "{ahead:?}");
    }
}

/// A browser that posts the storefront's order form while its customer is
/// in line gets the line's page with the same form on it, not a page that
/// refreshes itself (a refresh is a GET of `/products/SKU/buy`, which the
/// shop does not serve, and the order would be lost). Sent from that page
/// the customer keeps their place until their turn comes; then the order
/// is placed, and sent once more, it is the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_sent_while_in_line_is_kept_to_send_again_and_placed_once() {
    let sold = sale(100, 2.0, "").await;
    let gateway = &sold.gateway;
    customers_ahead(gateway, 8).await;
    const FORM: &str = "idempotency_key=k-line-1&customer=bea%40example.com&quantity=1";
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let buy = format!("{}/products/hot-1/buy", gateway.url);
    let send = |ticket: Option<&str>, body: String| {
        let mut request = browser
            .post(&buy)
            .header("x-forwarded-for", "10.20.0.1")
            .header("accept", "text/html")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(ticket) = ticket {
            request = request.header("flashguard-ticket", ticket);
        }
        request.send()
    };
    let posted = send(None, FORM.to_string()).await.unwrap();
    assert_eq!(posted.status(), 200);
    let mut ticket = posted.headers()["flashguard-ticket"]
        .to_str()
        .unwrap()
        .to_string();
    let html = posted.text().await.unwrap();
    assert!(html.contains("You are in line"), "{html}");
    assert!(!html.contains(r#"http-equiv="refresh""#), "{html}");
    let fields = form_fields(&html, "/products/hot-1/buy");
    let resent: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&fields)
        .finish();
    assert_eq!(resent, FORM);

    // The button, pressed every 300 ms: the line's page again until the
    // turn comes, then the shop's answer to the order.
    let deadline = Instant::now() + Duration::from_secs(20);
    let placed = loop {
        let response = send(Some(&ticket), resent.clone()).await.unwrap();
        if let Some(fresh) = response.headers().get("flashguard-ticket") {
            ticket = fresh.to_str().unwrap().to_string();
        }
        if response.status() == 303 {
            break response.headers()["location"].to_str().unwrap().to_string();
        }
        assert_eq!(response.status(), 200);
        let html = response.text().await.unwrap();
        assert!(html.contains("You are in line"), "{html}");
        assert!(Instant::now() < deadline, "not let in within 20 s");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(placed.starts_with("/orders/"), "{placed}");
    let again = send(Some(&ticket), resent).await.unwrap();
    assert_eq!(again.status(), 303);
    assert_eq!(again.headers()["location"], placed.as_str(), "one order");
    let _ = &sold.shop;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_that_ordered_from_the_line_reaches_its_order_without_pressing_again() {
    let sold = sale(100, 2.0, "").await;
    let gateway = &sold.gateway;
    customers_ahead(gateway, 8).await;
    // Chromium posts "Buy now" from behind eight customers, then is left
    // alone: only the room's own page can bring it to the shop.
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/dashboard/line_order.mjs"
    );
    let buy = format!("{}/products/hot-1/buy", gateway.url);
    let output = tokio::process::Command::new("node")
        .args([
            script,
            &buy,
            // `submit` as a store's named button sends it: a field that
            // would stand in for the form's own `submit` method.
            "idempotency_key=k-browser-1&customer=cy%40example.com&quantity=1&submit=Buy",
            "10.30.0.1",
        ])
        .output()
        .await
        .expect("node runs");
    let seen = support::last_json_line(&output);
    assert!(
        seen["roomPages"].as_u64() >= Some(1),
        "it waited in line: {seen}"
    );
    assert!(
        seen["url"].as_str().unwrap_or("").contains("/orders/"),
        "{seen}"
    );
    assert_eq!(seen["consoleErrors"], json!([]), "{seen}");
    let orders: Vec<Value> = support::export(&sold.shop.url)
        .await
        .into_iter()
        .filter(|order| order["customer"] == "cy@example.com")
        .collect();
    assert_eq!(orders.len(), 1, "one order, placed once: {orders:?}");
}
