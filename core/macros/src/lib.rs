//! Code that touches flash is written once, as `async` code, in a module
//! that `flashpatch` compiles twice: once as it is, for async flash drivers,
//! and once through [`blocking`], for blocking ones. In each copy the
//! attribute `#[io]` names one of the two macros here, so the same text
//! becomes both:
//!
//! ```text
//!  async fn f(&mut self) -> R { flash.read(..).await?; .. }   // written once, under #[io]
//!  fn f(&mut self) -> R { flash.read(..)?; .. }               // the blocking copy
//! ```
//!
//! Nothing else changes, so the blocking copy is plain code: no future, no
//! state machine, no executor.

use proc_macro::{Delimiter, Group, TokenStream, TokenTree};

/// The blocking copy of an item: every `async` keyword and every `.await`
/// is removed, in the item and everything nested in it, and the closure
/// trait `AsyncFnMut` becomes `FnMut`.
#[proc_macro_attribute]
pub fn blocking(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return error("`blocking` takes no arguments");
    }
    strip(item)
}

/// The async copy of an item: the item as it is.
#[proc_macro_attribute]
pub fn asynchronous(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return error("`asynchronous` takes no arguments");
    }
    item
}

fn strip(tokens: TokenStream) -> TokenStream {
    let mut out: Vec<TokenTree> = Vec::new();
    for t in tokens {
        match t {
            TokenTree::Ident(ref i) if i.to_string() == "async" => {}
            TokenTree::Ident(ref i) if i.to_string() == "AsyncFnMut" => {
                out.push(TokenTree::Ident(proc_macro::Ident::new("FnMut", i.span())));
            }
            TokenTree::Ident(ref i) if i.to_string() == "await" => {
                // `.await`: drop the dot before it too.
                match out.last() {
                    Some(TokenTree::Punct(p)) if p.as_char() == '.' => {
                        out.pop();
                    }
                    _ => out.push(t),
                }
            }
            TokenTree::Group(g) => {
                let mut n = Group::new(g.delimiter(), strip(g.stream()));
                n.set_span(g.span());
                out.push(TokenTree::Group(n));
            }
            t => out.push(t),
        }
    }
    out.into_iter().collect()
}

fn error(msg: &str) -> TokenStream {
    let lit = proc_macro::Literal::string(msg);
    let body: TokenStream = [TokenTree::Literal(lit)].into_iter().collect();
    let mut ts: TokenStream = "::core::compile_error!".parse().unwrap_or_default();
    ts.extend([TokenTree::Group(Group::new(Delimiter::Parenthesis, body))]);
    ts.extend("; ".parse::<TokenStream>().unwrap_or_default());
    ts
}
