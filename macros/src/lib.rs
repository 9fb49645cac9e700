//! `#[tools]`: the tools of an agent or task written as documented methods.
//!
//! ```ignore
//! struct CollectPayment { subtotal: Cents }
//!
//! #[tools(result = Payment)]
//! impl CollectPayment {
//!     /// Confirm how the caller pays and the tip, once they said both.
//!     ///
//!     /// - `method`: how the caller pays
//!     /// - `tip_percentage`: the tip in percent of the subtotal; 0 for none
//!     #[tool(hidden_on_enter)]
//!     fn confirm_payment(
//!         &self,
//!         ctx: &mut ToolContext<'_, Payment>,
//!         method: PaymentMethod,
//!         tip_percentage: u32,
//!     ) -> ToolResult {
//!         ctx.complete(Payment { method, tip_percent: tip_percentage });
//!         Ok("Payment confirmed.".into())
//!     }
//! }
//!
//! let task = AgentTask::new("CollectPayment", "...").with_tools(CollectPayment { .. });
//! ```
//!
//! Each method marked `#[tool]` becomes a tool named after it (`#[tool(name = "...")]`
//! renames it), described by the first paragraph of its doc comment (required: it is what
//! the model reads; later paragraphs are for people), whose
//! arguments are the method's parameters after `&self` and the optional `ToolContext`:
//! their JSON schema comes from their types (`serde::Deserialize` + `schemars::JsonSchema`;
//! an enum is a closed set of values), and a doc line `` - `name`: text `` describes one.
//! `#[tool(hidden_on_enter)]` withholds it while the task enters; `#[tool(code_only)]`
//! never offers it to the model (code runs it: `OnEnter::CallTool`, a key). Bodies may be `fn` or
//! `async fn`, returning `Result<String, ToolError>`; they read the task's fields through
//! `&self`. `#[tools(result = T)]` makes them tools of tasks with result `T`; `#[tools]`
//! alone makes tools any task can offer, whose methods are generic over the result
//! (`fn end_call<T: Send + 'static>(&self, ctx: &mut ToolContext<'_, T>)`).
//!
//! The impl block then implements `ToolSet`, and `AgentTask::with_tools` adds them all.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{
    Attribute, Expr, ExprLit, FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, Lit, LitStr, Meta, Pat,
    Token, Type,
};

/// Turns the `#[tool]` methods of an impl block into the framework's tools; see the crate
/// documentation.
#[proc_macro_attribute]
pub fn tools(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

/// `#[tools(result = T)]` or `#[tools]`.
struct ToolsArgs {
    result: Option<Type>,
}

impl Parse for ToolsArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.is_empty() {
            return Ok(ToolsArgs { result: None });
        }
        let key: Ident = input.parse()?;
        if key != "result" {
            return Err(syn::Error::new(
                key.span(),
                "expected `result = Type` (the result type of the task these tools belong to), or nothing for tools any task can offer",
            ));
        }
        input.parse::<Token![=]>()?;
        let result: Type = input.parse()?;
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after `result = Type`"));
        }
        Ok(ToolsArgs {
            result: Some(result),
        })
    }
}

/// What `#[tool(...)]` says about one method.
#[derive(Default)]
struct ToolOptions {
    name: Option<LitStr>,
    hidden_on_enter: bool,
    code_only: bool,
}

/// One tool, parsed from its method.
struct ToolMethod {
    method: Ident,
    name: String,
    description: String,
    hidden_on_enter: bool,
    code_only: bool,
    takes_context: bool,
    is_async: bool,
    args: Vec<(Ident, Type, Option<String>)>,
}

pub(crate) fn expand(attr: Tokens, item: Tokens) -> syn::Result<Tokens> {
    let args: ToolsArgs = syn::parse2(attr)?;
    let mut block: ItemImpl = syn::parse2(item)?;
    if let Some((_, path, _)) = &block.trait_ {
        return Err(syn::Error::new(
            path.span(),
            "#[tools] goes on an inherent impl block (`impl MyTask { ... }`), not a trait impl",
        ));
    }
    if !block.generics.params.is_empty() {
        return Err(syn::Error::new(
            block.generics.span(),
            "#[tools] does not support generic impl blocks",
        ));
    }
    let mut tools = Vec::new();
    for item in &mut block.items {
        if let ImplItem::Fn(function) = item
            && let Some(options) = take_tool_attribute(&mut function.attrs)?
        {
            tools.push(parse_tool(function, options)?);
        }
    }
    if tools.is_empty() {
        return Err(syn::Error::new(
            block.self_ty.span(),
            "#[tools] found no method marked #[tool]",
        ));
    }
    let self_ty = &block.self_ty;
    let agent = framework_path();
    let serde_path = format!("{}::__private::serde", agent.to_string().replace(' ', ""));
    let schemars_path = format!(
        "{}::__private::schemars",
        agent.to_string().replace(' ', "")
    );
    let (result, generics, bounds) = match &args.result {
        Some(result) => (quote!(#result), quote!(), quote!()),
        None => (
            quote!(__BvResult),
            quote!(<__BvResult>),
            quote!(where __BvResult: ::core::marker::Send + 'static),
        ),
    };
    let mut definitions = Vec::new();
    let mut adds = Vec::new();
    for tool in &tools {
        let struct_name = format_ident!("__BvTool_{}", tool.method);
        let args_name = format_ident!("__BvArgs_{}", tool.method);
        let method = &tool.method;
        let name = &tool.name;
        let description = &tool.description;
        let hidden = tool.hidden_on_enter;
        let offered = !tool.code_only;
        let fields = tool.args.iter().map(|(ident, ty, doc)| {
            let doc = doc.as_ref().map(|d| quote!(#[doc = #d]));
            quote_spanned!(ty.span()=> #doc #ident: #ty)
        });
        let passed = tool.args.iter().map(|(ident, _, _)| quote!(args.#ident));
        let context = tool.takes_context.then(|| quote!(ctx,));
        let body = if tool.is_async {
            quote!(async move { self.0.#method(#context #(#passed),*).await })
        } else {
            quote!(::core::future::ready(self.0.#method(#context #(#passed),*)))
        };
        let ctx_name = if tool.takes_context {
            quote!(ctx)
        } else {
            quote!(_ctx)
        };
        let args_binding = if tool.args.is_empty() {
            quote!(_args)
        } else {
            quote!(args)
        };
        definitions.push(quote! {
            #[allow(non_camel_case_types)]
            #[derive(
                #agent::__private::serde::Deserialize,
                #agent::__private::schemars::JsonSchema
            )]
            #[serde(crate = #serde_path)]
            #[schemars(crate = #schemars_path)]
            struct #args_name { #(#fields),* }

            #[allow(non_camel_case_types)]
            struct #struct_name(::std::sync::Arc<#self_ty>);

            impl #generics #agent::Tool<#result> for #struct_name #bounds {
                type Args = #args_name;

                fn name(&self) -> &str {
                    #name
                }

                fn description(&self) -> ::std::string::String {
                    ::std::string::String::from(#description)
                }

                fn hidden_on_enter(&self) -> bool {
                    #hidden
                }

                fn offered_to_model(&self) -> bool {
                    #offered
                }

                #[allow(unused_variables)]
                fn call(
                    &self,
                    #ctx_name: &mut #agent::ToolContext<'_, #result>,
                    #args_binding: #args_name,
                ) -> impl ::core::future::Future<
                    Output = ::core::result::Result<::std::string::String, #agent::ToolError>,
                > + ::core::marker::Send {
                    #body
                }
            }
        });
        adds.push(quote!(.with_tool(#struct_name(self.clone()))));
    }
    Ok(quote! {
        #block

        const _: () = {
            #(#definitions)*

            impl #generics #agent::ToolSet<#result> for #self_ty #bounds {
                fn add_to(
                    self: ::std::sync::Arc<Self>,
                    task: #agent::AgentTask<#result>,
                ) -> #agent::AgentTask<#result> {
                    task #(#adds)*
                }
            }
        };
    })
}

/// The path of the framework's `agent` module: `crate::agent` while the framework's own
/// library is compiled (its restaurant uses the macro; a crate cannot name itself by its
/// name there, as its `bella_vista` module takes that name), else `::bella_vista::agent`
/// (other crates, and the library's doctests, which rustdoc compiles as crates of their own).
fn framework_path() -> Tokens {
    let var = |name: &str| std::env::var_os(name).is_some();
    if std::env::var("CARGO_CRATE_NAME").as_deref() == Ok("bella_vista")
        && !var("CARGO_BIN_NAME")
        && !var("UNSTABLE_RUSTDOC_TEST_PATH")
    {
        quote!(crate::agent)
    } else {
        quote!(::bella_vista::agent)
    }
}

/// Removes `#[tool]` / `#[tool(...)]` from `attrs` and returns what it said, or `None`
/// when the method is not a tool.
fn take_tool_attribute(attrs: &mut Vec<Attribute>) -> syn::Result<Option<ToolOptions>> {
    let Some(index) = attrs.iter().position(|a| a.path().is_ident("tool")) else {
        return Ok(None);
    };
    let attribute = attrs.remove(index);
    let mut options = ToolOptions::default();
    if let Meta::List(_) = &attribute.meta {
        attribute.parse_nested_meta(|meta| {
            if meta.path.is_ident("hidden_on_enter") {
                options.hidden_on_enter = true;
                Ok(())
            } else if meta.path.is_ident("code_only") {
                options.code_only = true;
                Ok(())
            } else if meta.path.is_ident("name") {
                options.name = Some(meta.value()?.parse()?);
                Ok(())
            } else {
                Err(meta.error("expected `hidden_on_enter`, `code_only` or `name = \"...\"`"))
            }
        })?;
    }
    Ok(Some(options))
}

fn parse_tool(function: &mut ImplItemFn, options: ToolOptions) -> syn::Result<ToolMethod> {
    let signature = &function.sig;
    let method = signature.ident.clone();
    let doc = doc_lines(&function.attrs);
    let (description, arg_docs) = split_doc(&doc);
    if description.is_empty() {
        return Err(syn::Error::new(
            method.span(),
            format!(
                "the tool `{method}` needs a doc comment: it is the description the model reads \
                 (say when to call it)"
            ),
        ));
    }
    let mut inputs = signature.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(receiver))
            if receiver.reference.is_some() && receiver.mutability.is_none() => {}
        _ => {
            return Err(syn::Error::new(
                signature.span(),
                format!("the tool `{method}` must take `&self` first"),
            ));
        }
    }
    let mut takes_context = false;
    let mut args = Vec::new();
    for (position, input) in inputs.enumerate() {
        let FnArg::Typed(typed) = input else {
            continue;
        };
        if position == 0 && is_tool_context(&typed.ty) {
            takes_context = true;
            continue;
        }
        let Pat::Ident(pattern) = typed.pat.as_ref() else {
            return Err(syn::Error::new(
                typed.pat.span(),
                "a tool's arguments must be plain names (`quantity: u32`): the name is the JSON field",
            ));
        };
        let ident = pattern.ident.clone();
        let doc = arg_docs
            .iter()
            .find(|(name, _)| *name == ident.to_string().trim_start_matches("r#"))
            .map(|(_, text)| text.clone());
        args.push((ident, (*typed.ty).clone(), doc));
    }
    for (name, _) in &arg_docs {
        if !args.iter().any(|(ident, _, _)| ident == name.as_str()) {
            return Err(syn::Error::new(
                method.span(),
                format!(
                    "the doc comment of `{method}` describes `{name}`, which is not one of its arguments"
                ),
            ));
        }
    }
    Ok(ToolMethod {
        name: options
            .name
            .map(|n| n.value())
            .unwrap_or_else(|| method.to_string()),
        method,
        description,
        hidden_on_enter: options.hidden_on_enter,
        code_only: options.code_only,
        takes_context,
        is_async: signature.asyncness.is_some(),
        args,
    })
}

/// `&mut ToolContext<...>` (any path ending in `ToolContext`).
fn is_tool_context(ty: &Type) -> bool {
    let Type::Reference(reference) = ty else {
        return false;
    };
    if reference.mutability.is_none() {
        return false;
    }
    match reference.elem.as_ref() {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "ToolContext"),
        _ => false,
    }
}

/// The text of the `///` lines, one entry per line, leading space removed.
fn doc_lines(attrs: &[Attribute]) -> Vec<String> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            Meta::NameValue(pair) => match &pair.value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(text),
                    ..
                }) => Some(text.value()),
                _ => None,
            },
            _ => None,
        })
        .map(|line| {
            line.strip_prefix(' ')
                .unwrap_or(&line)
                .trim_end()
                .to_string()
        })
        .collect()
}

/// The description (the first paragraph, its lines joined by spaces: what the model
/// reads; later paragraphs are for people) and the argument lines `` - `name`: text ``.
fn split_doc(lines: &[String]) -> (String, Vec<(String, String)>) {
    let mut paragraphs: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut args = Vec::new();
    for line in lines {
        let trimmed = line.trim();
        if let Some(arg) = argument_line(trimmed) {
            args.push(arg);
            continue;
        }
        if trimmed.is_empty() {
            if !current.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
            continue;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(trimmed);
    }
    if !current.is_empty() {
        paragraphs.push(current);
    }
    (paragraphs.into_iter().next().unwrap_or_default(), args)
}

/// `` - `name`: text `` (or `*` for `-`).
fn argument_line(line: &str) -> Option<(String, String)> {
    let rest = line
        .strip_prefix("- ")
        .or_else(|| line.strip_prefix("* "))?;
    let rest = rest.strip_prefix('`')?;
    let (name, rest) = rest.split_once('`')?;
    let text = rest.trim_start().strip_prefix(':')?.trim();
    (!name.is_empty() && !text.is_empty()).then(|| (name.to_string(), text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(attr: Tokens, item: Tokens) -> syn::Error {
        match expand(attr, item) {
            Ok(tokens) => panic!("expected an error, got {tokens}"),
            Err(error) => error,
        }
    }

    #[test]
    fn a_tool_without_a_doc_comment_is_an_error_at_its_name() {
        let item: Tokens = "impl Pay {\n    #[tool]\n    fn confirm_payment(&self) -> ToolResult { Ok(String::new()) }\n}"
            .parse()
            .unwrap();
        let error = error_of(quote!(result = Payment), item);
        assert!(
            error
                .to_string()
                .contains("`confirm_payment` needs a doc comment"),
            "{error}"
        );
        let start = error.span().start();
        assert_eq!(
            (start.line, start.column),
            (3, 7),
            "points at the method's name"
        );
    }

    #[test]
    fn an_argument_described_but_missing_is_an_error() {
        let item = quote! {
            impl Pay {
                /// Pay.
                ///
                /// - `tip`: the tip
                #[tool]
                fn pay(&self, method: Method) -> ToolResult { Ok(String::new()) }
            }
        };
        let error = error_of(quote!(result = Payment), item);
        assert!(error.to_string().contains("describes `tip`"), "{error}");
    }

    #[test]
    fn the_receiver_must_be_a_shared_reference() {
        let item = quote! {
            impl Pay {
                /// Pay.
                #[tool]
                fn pay(self) -> ToolResult { Ok(String::new()) }
            }
        };
        let error = error_of(quote!(result = Payment), item);
        assert!(error.to_string().contains("must take `&self`"), "{error}");
    }

    #[test]
    fn unknown_options_and_empty_blocks_are_errors() {
        let item = quote! { impl Pay { /// Pay.
        #[tool(hidden)] fn pay(&self) -> ToolResult { Ok(String::new()) } } };
        let error = error_of(quote!(result = Payment), item);
        assert!(
            error.to_string().contains("expected `hidden_on_enter`"),
            "{error}"
        );
        let error = error_of(
            quote!(result = Payment),
            quote!(impl Pay { fn helper(&self) {} }),
        );
        assert!(
            error.to_string().contains("no method marked #[tool]"),
            "{error}"
        );
        let error = error_of(quote!(output = Payment), quote!(impl Pay {}));
        assert!(
            error.to_string().contains("expected `result = Type`"),
            "{error}"
        );
    }

    #[test]
    fn a_code_only_tool_is_not_offered_to_the_model() {
        let item = quote! {
            impl Item {
                /// Decide from the caller's words.
                #[tool(code_only)]
                fn reconsider(&self) -> ToolResult { Ok(String::new()) }
            }
        };
        let out = expand(quote!(result = Payment), item).unwrap().to_string();
        assert!(
            out.contains("fn offered_to_model (& self) -> bool { false }"),
            "{out}"
        );
    }

    #[test]
    fn docs_split_into_the_description_and_argument_descriptions() {
        let lines: Vec<String> = [
            "Confirm how the caller pays",
            "and the tip.",
            "",
            "For people: not shown to the model.",
            "",
            "- `method`: card, cash or mobile",
            "* `tip_percentage`: percent of the subtotal",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (description, args) = split_doc(&lines);
        assert_eq!(description, "Confirm how the caller pays and the tip.");
        assert_eq!(
            args,
            [
                ("method".to_string(), "card, cash or mobile".to_string()),
                (
                    "tip_percentage".to_string(),
                    "percent of the subtotal".to_string()
                )
            ]
        );
    }

    #[test]
    fn a_tool_expands_to_a_tool_impl_and_a_tool_set() {
        let item = quote! {
            impl Pay {
                /// Confirm the payment.
                ///
                /// - `method`: how they pay
                #[tool(hidden_on_enter, name = "confirm")]
                async fn confirm_payment(&self, ctx: &mut ToolContext<'_, Payment>, method: Method) -> ToolResult {
                    Ok(String::new())
                }
            }
        };
        let out = expand(quote!(result = Payment), item).unwrap().to_string();
        assert!(
            out.contains("agent :: Tool < Payment > for __BvTool_confirm_payment"),
            "{out}"
        );
        assert!(out.contains("\"confirm\""), "{out}");
        assert!(
            out.contains("fn hidden_on_enter (& self) -> bool { true }"),
            "{out}"
        );
        assert!(
            out.contains("# [doc = \"how they pay\"] method : Method"),
            "{out}"
        );
        assert!(
            out.contains("confirm_payment (ctx , args . method) . await"),
            "{out}"
        );
        assert!(
            out.contains("fn offered_to_model (& self) -> bool { true }"),
            "{out}"
        );
        assert!(out.contains("ToolSet < Payment > for Pay"), "{out}");
        assert!(
            !out.contains("# [tool"),
            "the helper attribute is removed: {out}"
        );
    }
}
