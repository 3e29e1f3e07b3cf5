//! How a page the room answers a browser with brings its customer back.
//!
//! A page that refreshes itself (`<meta http-equiv="refresh">`) asks for
//! its own address again, and a browser always does that with a GET. For
//! a GET that is the same request; for a form the customer posted (the
//! storefront's "Buy now") it is not: the GET of the form's action
//! (`/products/SKU/buy`) is a 405 at the shop, and the order the customer
//! meant to place would turn, after their wait, into an error page with
//! their form gone. So a request other than GET or HEAD gets a page that
//! does not refresh: for a form the gateway read whole, the same fields in
//! a form of its own that posts them again at a press of its button (the
//! storefront's own busy page does the same, and its idempotency key makes
//! a second press safe); for anything else (a body streamed on, or not a
//! form), words that say to go back and send it again.
//!
//! The kept form is sent again by itself when the wait is over, as the
//! refresh does for a GET: a few words of script submit it then, unless
//! the customer pressed the button first. Without script the button is
//! still there. A form sent again too early gets the same page back, with
//! a new wait, as a refresh does.

use http::Method;

use crate::html::escape;

/// Forms larger than this are not offered again: the page would carry
/// every byte of them, and a browser's form is a few hundred bytes.
const MOST_FORM_BYTES: usize = 16 * 1024;

/// How the page brings its customer back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Again {
    /// A GET or HEAD: the page refreshes itself.
    Refresh,
    /// A form the browser posted: posted again, from the page, to `action`.
    Resend {
        action: String,
        fields: Vec<(String, String)>,
    },
    /// Any other request: the customer is asked to go back and send it.
    GoBack,
}

impl Again {
    /// For a request of `method` to `target`, with `content_type`, whose
    /// body is `body` when the gateway read it whole.
    pub(crate) fn of(
        method: &Method,
        target: &str,
        content_type: Option<&[u8]>,
        body: Option<&[u8]>,
    ) -> Again {
        if method == Method::GET || method == Method::HEAD {
            return Again::Refresh;
        }
        // A page's form can post, not put or delete.
        if method != Method::POST {
            return Again::GoBack;
        }
        let is_form = content_type.is_some_and(|value| {
            let media = value.split(|&b| b == b';').next().unwrap_or_default();
            media
                .trim_ascii()
                .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
        });
        match body {
            // The page posts to an address of this site only.
            Some(body) if is_form && body.len() <= MOST_FORM_BYTES && target.starts_with('/') => {
                Again::Resend {
                    action: target.to_string(),
                    fields: form_urlencoded::parse(body).into_owned().collect(),
                }
            }
            _ => Again::GoBack,
        }
    }

    /// The `<meta>` that refreshes the page in `seconds`, when it does.
    pub(crate) fn refresh_tag(&self, seconds: u64) -> String {
        match self {
            Again::Refresh => format!("<meta http-equiv=\"refresh\" content=\"{seconds}\">"),
            Again::Resend { .. } | Again::GoBack => String::new(),
        }
    }

    /// What the page says, and holds, to bring the customer back in
    /// `seconds`; `refreshing` is its words when it refreshes itself.
    pub(crate) fn markup(&self, seconds: u64, refreshing: &str) -> String {
        match self {
            Again::Refresh => format!("<p>{refreshing}</p>"),
            Again::Resend { action, fields } => {
                let mut form = format!(
                    "<p id=\"send-again\">What you sent has not reached the shop. It is kept \
                     here and sent again by itself in {seconds} s (or press the button then). \
                     Sending it again does not lose your place.</p>\
                     <form method=\"post\" action=\"{}\" id=\"again\">",
                    escape(action)
                );
                for (name, value) in fields {
                    form.push_str(&format!(
                        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                        escape(name),
                        escape(value)
                    ));
                }
                form.push_str("<button type=\"submit\">Send again</button></form>");
                // Once, whichever comes first: the timer, or a press (which
                // stops the timer). The button is disabled once the form
                // goes, so that it is not sent twice from this page. The
                // form's methods are called from the prototype: the fields
                // are the store's, and one named `submit` (a named button's)
                // would stand in for `f.submit` on the form itself.
                form.push_str(&format!(
                    "<script>(function(){{var F=HTMLFormElement.prototype,\
                     f=document.getElementById(\"again\"),\
                     b=Element.prototype.querySelector.call(f,\"button\"),\
                     t=setTimeout(function(){{b.disabled=true;F.submit.call(f)}},{});\
                     EventTarget.prototype.addEventListener.call(f,\"submit\",function(){{\
                     clearTimeout(t);setTimeout(function(){{b.disabled=true}})}})}})()</script>",
                    seconds.max(1) * 1000
                ));
                form
            }
            Again::GoBack => format!(
                "<p id=\"go-back\">What you sent has not reached the shop, and this page cannot \
                 send it again by itself: go back and send it again in {seconds} s. \
                 You keep your place.</p>"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: Option<&[u8]> = Some(b"application/x-www-form-urlencoded");

    #[test]
    fn a_get_refreshes_and_a_posted_form_is_kept_to_send_again() {
        let get = Again::of(&Method::GET, "/products/a", None, Some(b""));
        assert_eq!(get, Again::Refresh);
        assert!(get.refresh_tag(3).contains("content=\"3\""));

        let body = b"idempotency_key=k-1&customer=a%40b.example&quantity=2";
        let post = Again::of(&Method::POST, "/products/a/buy", FORM, Some(body));
        let Again::Resend { action, fields } = &post else {
            panic!("a form to send again: {post:?}");
        };
        assert_eq!(action, "/products/a/buy");
        assert_eq!(
            fields[1],
            ("customer".to_string(), "a@b.example".to_string())
        );
        assert_eq!(
            post.refresh_tag(3),
            "",
            "a refresh would turn it into a GET"
        );
        let page = post.markup(3, "refreshing");
        assert!(
            page.contains(r#"<form method="post" action="/products/a/buy" id="again">"#),
            "{page}"
        );
        assert!(page.contains(r#"name="quantity" value="2""#), "{page}");
        // Sent again by itself when the wait is over, and never sooner
        // than a second.
        assert!(page.contains("F.submit.call(f)},3000)"), "{page}");
        assert!(post.markup(0, "").contains("F.submit.call(f)},1000)"));
    }

    #[test]
    fn what_a_customer_typed_cannot_break_out_of_the_page() {
        let body = b"customer=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E&q%27=x";
        let post = Again::of(&Method::POST, "/buy?a=1&b=\"", FORM, Some(body));
        let page = post.markup(1, "");
        assert!(!page.contains("<script>alert"), "{page}");
        assert_eq!(
            page.matches("<script>").count(),
            1,
            "only the page's own: {page}"
        );
        assert!(page.contains("value=\"&quot;&gt;&lt;script&gt;"), "{page}");
        assert!(page.contains("name=\"q&#39;\""), "{page}");
        assert!(page.contains("action=\"/buy?a=1&amp;b=&quot;\""), "{page}");
    }

    #[test]
    fn a_request_that_cannot_be_sent_again_from_the_page_says_to_go_back() {
        let json = Some(&b"application/json"[..]);
        let cases = [
            // Not a form.
            Again::of(&Method::POST, "/api/orders", json, Some(b"{}")),
            // A form streamed on, not kept.
            Again::of(&Method::POST, "/buy", FORM, None),
            // A form too large to carry in a page.
            Again::of(&Method::POST, "/buy", FORM, Some(&[b'a'; 20_000])),
            // An address of another site (absolute form).
            Again::of(
                &Method::POST,
                "http://elsewhere.example/buy",
                FORM,
                Some(b"a=1"),
            ),
        ];
        for again in cases {
            assert_eq!(again, Again::GoBack);
            assert_eq!(again.refresh_tag(2), "");
            assert!(again.markup(2, "").contains("id=\"go-back\""));
        }
        // A page's form can post, not put.
        assert_eq!(
            Again::of(&Method::PUT, "/buy", FORM, Some(b"a=1")),
            Again::GoBack
        );
        let form_with_charset = Some(&b"Application/X-WWW-Form-Urlencoded; charset=UTF-8"[..]);
        let post = Again::of(&Method::POST, "/buy", form_with_charset, Some(b"a=1"));
        assert!(matches!(post, Again::Resend { .. }), "{post:?}");
    }
}
