//! Text put into the gateway's own pages (the waiting room's, the status
//! page and its feed).

/// Text made safe inside an element or a quoted attribute, of HTML or XML.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// For a page's head: no icon to fetch. A browser asks for /favicon.ico on
/// every page it shows, and for the gateway's pages (the room's, shown
/// again every few seconds to everyone in line; the status page, every
/// 30 s) that request would go through to the shops they are there to
/// spare, and be a 404 in the customer's console.
pub(crate) const NO_ICON: &str = "<link rel=\"icon\" href=\"data:,\">";
