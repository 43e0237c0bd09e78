//! Job expressions read as JavaScript: their syntax errors, and the helper
//! functions they call.
//!
//! An expression is parsed with oxc (a maintained JavaScript parser, so
//! async arrows, template literals, optional chaining and the rest of the
//! language parse as node would parse them). [`syntax_errors`] gives each
//! error with its line and column, for `check`; [`helper_calls`] counts the
//! calls of plain names (`each(...)`, `fn(...)`, `createTEI(...)`) wherever
//! they are: top-level operations, operations nested inside `each`, `fn` and
//! friends, and the first call of a chain (`get(...).then(...)`). Names the
//! expression defines itself (`function f() {}`, `const f = ...`) are not
//! helpers. Which of the names an adaptor really has is the adaptor's own
//! list (see `library::adaptor`); this module knows no adaptor.
//!
//! [`compile`] is the compile step the engine runs every job through (see
//! its module).
//!
//! It never runs anything, and never reads text with a regular expression.

mod compile;

pub use compile::compile;

use std::collections::{BTreeMap, BTreeSet};

use oxc_allocator::Allocator;
use oxc_ast::ast::{
    BindingPattern, CallExpression, Expression, Function, Program, VariableDeclarator,
};
use oxc_ast_visit::{Visit, walk};
use oxc_parser::Parser;
use oxc_span::SourceType;

/// A syntax error at a place in the expression (both 1-based; the column
/// counts characters, not bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// How the expression is read: a script unless it imports or exports (the
/// most lenient reading; `@openfn/core` wraps it in a function anyway).
fn source_type() -> SourceType {
    SourceType::unambiguous()
}

/// Every syntax error the parser finds, in source order; empty when the
/// expression parses.
pub fn syntax_errors(source: &str) -> Vec<SyntaxError> {
    let allocator = Allocator::default();
    let parsed = Parser::new(&allocator, source, source_type()).parse();
    let mut out: Vec<SyntaxError> = parsed
        .diagnostics
        .errors()
        .map(|d| {
            let offset = d.labels.first().map(|l| l.offset() as usize).unwrap_or(0);
            let (line, column) = line_column(source, offset);
            SyntaxError {
                line,
                column,
                message: d.message.to_string(),
            }
        })
        .collect();
    out.sort_by_key(|e| (e.line, e.column));
    out
}

/// The names the expression calls as plain functions, each with how many
/// times it is called; `Err` with its syntax errors when it does not parse.
pub fn helper_calls(source: &str) -> Result<BTreeMap<String, u32>, Vec<SyntaxError>> {
    let allocator = Allocator::default();
    let parsed = Parser::new(&allocator, source, source_type()).parse();
    if parsed.diagnostics.has_errors() || parsed.panicked {
        return Err(syntax_errors(source));
    }
    Ok(calls_in(&parsed.program))
}

fn calls_in(program: &Program<'_>) -> BTreeMap<String, u32> {
    let mut found = Calls::default();
    found.visit_program(program);
    let Calls { mut calls, defined } = found;
    calls.retain(|name, _| !defined.contains(name));
    calls
}

/// Walks the whole tree: calls of plain names, and the names the
/// expression binds itself.
#[derive(Default)]
struct Calls {
    calls: BTreeMap<String, u32>,
    defined: BTreeSet<String>,
}

impl<'a> Visit<'a> for Calls {
    fn visit_call_expression(&mut self, it: &CallExpression<'a>) {
        if let Expression::Identifier(name) = &it.callee {
            *self.calls.entry(name.name.to_string()).or_default() += 1;
        }
        walk::walk_call_expression(self, it);
    }

    fn visit_function(&mut self, it: &Function<'a>, flags: oxc_syntax::scope::ScopeFlags) {
        if let Some(id) = &it.id {
            self.defined.insert(id.name.to_string());
        }
        walk::walk_function(self, it, flags);
    }

    fn visit_variable_declarator(&mut self, it: &VariableDeclarator<'a>) {
        if let BindingPattern::BindingIdentifier(id) = &it.id {
            self.defined.insert(id.name.to_string());
        }
        walk::walk_variable_declarator(self, it);
    }
}

/// 1-based line and character column of a byte offset.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(source: &str) -> Vec<(String, u32)> {
        helper_calls(source).unwrap().into_iter().collect()
    }

    fn pairs(list: &[(&str, u32)]) -> Vec<(String, u32)> {
        list.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }

    #[test]
    fn top_level_and_nested_operations_are_counted() {
        let source = r#"
each('$.data.items[*]', fn(state => ({ ...state, n: 1 })));
each('$.data.others[*]', fn(async state => {
  const total = state.data?.items?.length ?? 0;
  console.log(`total: ${total} at ${new Date().toISOString()}`);
  return state;
}));
get('https://example.org').then(s => s);
"#;
        assert_eq!(calls(source), pairs(&[("each", 2), ("fn", 2), ("get", 1)]));
    }

    #[test]
    fn chained_and_deeply_nested_calls_are_found() {
        let source = "fn(s => s).then(() => each(dataPath('x'), merge(field('a', 1))));";
        assert_eq!(
            calls(source),
            pairs(&[
                ("dataPath", 1),
                ("each", 1),
                ("field", 1),
                ("fn", 1),
                ("merge", 1)
            ])
        );
    }

    #[test]
    fn names_the_expression_defines_are_not_helpers() {
        let source = "function double(n) { return n * 2 }\nconst add = (a, b) => a + b;\nfn(s => ({ n: double(add(1, 2)) }));";
        assert_eq!(calls(source), pairs(&[("fn", 1)]));
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let errors = syntax_errors("fn(state => {\n  return state;\n);\n");
        assert!(!errors.is_empty());
        assert_eq!((errors[0].line, errors[0].column), (3, 1), "{errors:?}");
        assert!(helper_calls("fn(state => {\n  return state;\n);\n").is_err());
        assert!(syntax_errors("fn(async s => await s?.x)").is_empty());
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(line_column("ab\n€x", 7), (2, 3));
        assert_eq!(line_column("", 0), (1, 1));
    }
}
