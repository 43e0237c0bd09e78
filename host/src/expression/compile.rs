//! The compile step: job code written for OpenFn's current runtime, made
//! into code `@openfn/core` 1.5.1 runs with the same result.
//!
//! Lightning and `@openfn/runtime` run jobs through `@openfn/compiler`,
//! which adds conveniences core 1.5.1 does not know (and which is not on the
//! npm registry, so it cannot simply be called). Each is rewritten here, in
//! this order, on the source text with oxc's parser, scopes and transformer:
//!
//! 1. **Lazy state** (the compiler's `lazy-state` transform): `$.a.b` is
//!    `state.a.b`, and the argument of the nearest operation call that holds
//!    it becomes `(state) => (…)`, so `get($.data.url)` runs as
//!    `get((state) => (state.data.url))`, which adaptors resolve against the
//!    state at run time. An argument that already is `(state) => …` is left
//!    as it is. `$` bound by the job itself (a parameter, a variable) is not
//!    lazy state. As in the compiler, `$` outside any call's argument (in a
//!    statement of its own, a `return`, a function's body) is an error, as
//!    is an argument function whose parameter is not called `state`; a bare
//!    `$` (not followed by `.x` or `[x]`) is left alone.
//! 2. **Promise chains** (the `promises` transform): an operation followed
//!    by `.then(…)` / `.catch(…)` outside any function, as in
//!    `get('/x').then(s => …)`, becomes one operation that runs the first and
//!    hands its promise to the chain; a `.catch` right after the operation
//!    catches its failure. Core alone would call `.then` on the operation
//!    function itself and fail.
//! 3. **ES2020 and later syntax** (`?.`, `??`, `||=`, `&&=`, `??=`, BigInt
//!    literals) is lowered to ES2019 with oxc's transformer, since core parses
//!    with acorn at `ecmaVersion: 10`. Only code that uses such syntax is
//!    reprinted.
//! 4. **Module scope** (the `top-level-operations` transform): in today's
//!    runtime a job is a module whose top-level calls are its operations and
//!    whose declarations (`const mapping = {…}`, `function f() {}`) run
//!    first, in scope for every operation. Core keeps only the first call
//!    inside each top-level statement and drops the rest, so a job of
//!    declarations and operations is wrapped into one operation: its
//!    declarations run, then its operations in order, each handed the last
//!    one's state (as the adaptor's `execute` chains them). `import … from
//!    '@openfn/…'` lines are dropped: the adaptor's functions are already in
//!    scope. A job with any other top-level statement (the original's
//!    `expression: none`, which core runs as no operation at all) is left
//!    to core untouched, as is a job of top-level calls only.
//!
//! A job that needs none of this is returned unchanged (`Ok(None)`), so
//! every job core 1.5.1 already ran runs exactly as before. What is never
//! done here: running anything, or reading code with a regular expression;
//! code that does not parse is left to core, which reports it as it always
//! has.

use oxc_allocator::Allocator;
use oxc_ast::AstKind;
use oxc_ast::ast::{
    ArrowFunctionExpression, AssignmentExpression, BindingPattern, BlockStatement, CallExpression,
    ChainExpression, Expression, Function, LogicalExpression, LogicalOperator, Program, Statement,
};
use oxc_ast_visit::{Visit, walk};
use oxc_codegen::Codegen;
use oxc_parser::Parser;
use oxc_semantic::SemanticBuilder;
use oxc_span::{GetSpan, Span};
use oxc_syntax::scope::ScopeFlags;
use oxc_transformer::{TransformOptions, Transformer};

use super::{SyntaxError, line_column, source_type};

/// The code core runs for `source`: `Ok(None)` when that is `source` itself,
/// `Ok(Some(code))` when a step above rewrote it, `Err` where the job uses
/// lazy state as the compiler refuses it (with its line and column in
/// `source`).
pub fn compile(source: &str) -> Result<Option<String>, SyntaxError> {
    type Step = fn(&str) -> Result<Option<String>, SyntaxError>;
    const STEPS: [Step; 4] = [lazy_state, promise_chains, lower_syntax, module_scope];
    let mut code = None;
    for step in STEPS {
        let input = code.as_deref().unwrap_or(source);
        // Only the first step refuses anything, so an error's place is in
        // the author's text.
        if let Some(next) = step(input)? {
            code = Some(next);
        }
    }
    Ok(code)
}

/// Parses `text`; `None` when it does not parse (core reports it then).
fn parse<'a>(allocator: &'a Allocator, text: &'a str) -> Option<Program<'a>> {
    let parsed = Parser::new(allocator, text, source_type()).parse();
    (!parsed.panicked && !parsed.diagnostics.has_errors()).then_some(parsed.program)
}

fn error_at(source: &str, offset: u32, message: impl Into<String>) -> SyntaxError {
    let (line, column) = line_column(source, offset as usize);
    SyntaxError {
        line,
        column,
        message: message.into(),
    }
}

/// Text edits on one source: replacements of a span, applied in one pass.
#[derive(Default)]
struct Edits {
    /// (start, end, rank, text); insertions have start == end. At one
    /// offset, lower ranks go first.
    list: Vec<(u32, u32, u8, String)>,
}

impl Edits {
    fn replace(&mut self, span: Span, text: impl Into<String>) {
        self.list.push((span.start, span.end, 1, text.into()));
    }

    fn wrap(&mut self, span: Span, before: &str, after: &str) {
        self.list
            .push((span.start, span.start, 0, before.to_string()));
        self.list.push((span.end, span.end, 2, after.to_string()));
    }

    fn apply(mut self, source: &str) -> Option<String> {
        if self.list.is_empty() {
            return None;
        }
        self.list
            .sort_by_key(|(start, end, rank, _)| (*start, *rank, *end));
        self.list.dedup();
        let mut out = String::with_capacity(source.len() + 64);
        let mut at = 0usize;
        for (start, end, _, text) in self.list {
            let (start, end) = (start as usize, end as usize);
            if start < at {
                continue; // inside a span already replaced
            }
            out.push_str(&source[at..start]);
            out.push_str(&text);
            at = end;
        }
        out.push_str(&source[at..]);
        Some(out)
    }
}

// ---- 1. lazy state -------------------------------------------------------

fn lazy_state(source: &str) -> Result<Option<String>, SyntaxError> {
    let allocator = Allocator::default();
    let Some(program) = parse(&allocator, source) else {
        return Ok(None);
    };
    let semantic = SemanticBuilder::new()
        .with_build_nodes(true)
        .build(&program)
        .semantic;
    let (nodes, scoping) = (semantic.nodes(), semantic.scoping());
    let Some((_, references)) = scoping
        .root_unresolved_references()
        .iter()
        .find(|(name, _)| name.as_str() == "$")
    else {
        return Ok(None);
    };
    let mut edits = Edits::default();
    let mut wrapped: Vec<Span> = Vec::new();
    for reference in references.iter() {
        let dollar = scoping.get_reference(*reference).node_id();
        let dollar_span = nodes.kind(dollar).span();
        // Only `$.x` and `$[x]`: `$` as the object of a member expression.
        let is_object = match nodes.parent_kind(dollar) {
            AstKind::StaticMemberExpression(m) => m.object.span() == dollar_span,
            AstKind::ComputedMemberExpression(m) => m.object.span() == dollar_span,
            _ => false,
        };
        if !is_object {
            continue;
        }
        edits.replace(dollar_span, "state");
        let invalid = |m: &str| {
            error_at(
                source,
                dollar_span.start,
                format!("invalid state operator: {m}"),
            )
        };
        // Walk up to the call whose argument holds this reference.
        let mut child = dollar;
        let argument = loop {
            let parent = nodes.parent_id(child);
            if parent == child {
                return Err(invalid("must be inside an expression"));
            }
            let child_span = nodes.kind(child).span();
            match nodes.kind(parent) {
                AstKind::CallExpression(call) if !contains(call.callee.span(), child_span) => {
                    break child;
                }
                AstKind::Program(_) => return Err(invalid("must be inside an expression")),
                kind if kind.is_statement() || kind.is_declaration() => {
                    return Err(invalid("must be inside an expression"));
                }
                _ => {}
            }
            child = parent;
        };
        if let AstKind::ArrowFunctionExpression(arrow) = nodes.kind(argument) {
            match arrow.params.items.as_slice() {
                [param] => match &param.pattern {
                    BindingPattern::BindingIdentifier(id) if id.name == "state" => continue,
                    BindingPattern::BindingIdentifier(id) => {
                        return Err(invalid(&format!(
                            "parameter \"{}\" should be called \"state\"",
                            id.name
                        )));
                    }
                    _ => return Err(invalid("parameter should be called \"state\"")),
                },
                _ => return Err(invalid("parent has wrong arity")),
            }
        }
        let span = nodes.kind(argument).span();
        if !wrapped.contains(&span) {
            wrapped.push(span);
            edits.wrap(span, "(state) => (", ")");
        }
    }
    Ok(edits.apply(source))
}

fn contains(outer: Span, inner: Span) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

// ---- 2. promise chains ---------------------------------------------------

/// `defer` of the compiler's `promises` transform, as an expression: core
/// keeps only calls at the top level, so it cannot be a declaration.
const DEFER: &str = "((operation, chain = (p) => p, onError = (e) => { throw e; }) => (state) => { try { return chain(Promise.resolve(operation(state)).catch(onError)); } catch (e) { return onError(e); } })";

fn promise_chains(source: &str) -> Result<Option<String>, SyntaxError> {
    let allocator = Allocator::default();
    let Some(program) = parse(&allocator, source) else {
        return Ok(None);
    };
    let mut found = Chains {
        source,
        depth: 0,
        edits: Edits::default(),
    };
    found.visit_program(&program);
    Ok(found.edits.apply(source))
}

/// Finds `op(…).then(…)` / `.catch(…)` outside every function and block.
struct Chains<'s> {
    source: &'s str,
    depth: u32,
    edits: Edits,
}

fn then_or_catch<'b, 'a>(call: &'b CallExpression<'a>) -> Option<(&'b str, &'b Expression<'a>)> {
    match &call.callee {
        Expression::StaticMemberExpression(m)
            if matches!(m.property.name.as_str(), "then" | "catch") =>
        {
            Some((m.property.name.as_str(), &m.object))
        }
        _ => None,
    }
}

impl Chains<'_> {
    fn text(&self, span: Span) -> &str {
        &self.source[span.start as usize..span.end as usize]
    }

    /// `defer(op, p => chain, catch)` for the chain `outer`, or `None` when
    /// no operation can be found under it.
    fn rebuild(&self, outer: &CallExpression<'_>) -> Option<String> {
        // Walk down `….then(…).catch(…)` to the operation it starts from,
        // keeping the link just above it.
        let mut link = outer;
        let op = loop {
            let (_, object) = then_or_catch(link)?;
            let Expression::CallExpression(inner) = object.without_parentheses() else {
                return None;
            };
            if then_or_catch(inner).is_none() {
                break inner;
            }
            link = inner;
        };
        let (name, _) = then_or_catch(link)?;
        let op_text = self.text(op.span);
        let splice = |cut: Span| {
            let whole = outer.span;
            format!(
                "(p) => {}p{}",
                &self.source[whole.start as usize..cut.start as usize],
                &self.source[cut.end as usize..whole.end as usize]
            )
        };
        if name == "catch" {
            let on_error = link.arguments.first().map(|a| self.text(a.span()))?;
            let chain = if std::ptr::eq(link, outer) {
                "undefined".to_string()
            } else {
                splice(link.span)
            };
            Some(format!("{DEFER}({op_text}, {chain}, {on_error})"))
        } else {
            Some(format!("{DEFER}({op_text}, {})", splice(op.span)))
        }
    }
}

impl<'a> Visit<'a> for Chains<'_> {
    fn visit_call_expression(&mut self, it: &CallExpression<'a>) {
        if self.depth == 0
            && then_or_catch(it).is_some()
            && let Some(text) = self.rebuild(it)
        {
            self.edits.replace(it.span, text);
            return;
        }
        walk::walk_call_expression(self, it);
    }

    fn visit_function(&mut self, it: &Function<'a>, flags: ScopeFlags) {
        self.depth += 1;
        walk::walk_function(self, it, flags);
        self.depth -= 1;
    }

    fn visit_arrow_function_expression(&mut self, it: &ArrowFunctionExpression<'a>) {
        self.depth += 1;
        walk::walk_arrow_function_expression(self, it);
        self.depth -= 1;
    }

    fn visit_block_statement(&mut self, it: &BlockStatement<'a>) {
        self.depth += 1;
        walk::walk_block_statement(self, it);
        self.depth -= 1;
    }
}

// ---- 3. ES2020+ syntax ---------------------------------------------------

fn lower_syntax(source: &str) -> Result<Option<String>, SyntaxError> {
    let allocator = Allocator::default();
    let Some(mut program) = parse(&allocator, source) else {
        return Ok(None);
    };
    let mut newer = Newer::default();
    newer.visit_program(&program);
    if !newer.found {
        return Ok(None);
    }
    let scoping = SemanticBuilder::new()
        .build(&program)
        .semantic
        .into_scoping();
    let options = TransformOptions::from_target("es2019").expect("es2019 is a known target");
    let lowered = Transformer::new(&allocator, std::path::Path::new("job.js"), &options)
        .build_with_scoping(scoping, &mut program);
    if lowered
        .diagnostics
        .iter()
        .any(|d| d.severity == oxc_diagnostics::Severity::Error)
    {
        // Left to core, which names what it cannot parse.
        return Ok(None);
    }
    Ok(Some(Codegen::new().build(&program).code))
}

/// Whether the code uses syntax newer than ES2019.
#[derive(Default)]
struct Newer {
    found: bool,
}

impl<'a> Visit<'a> for Newer {
    fn visit_chain_expression(&mut self, it: &ChainExpression<'a>) {
        self.found = true;
        walk::walk_chain_expression(self, it);
    }

    fn visit_logical_expression(&mut self, it: &LogicalExpression<'a>) {
        self.found |= it.operator == LogicalOperator::Coalesce;
        walk::walk_logical_expression(self, it);
    }

    fn visit_assignment_expression(&mut self, it: &AssignmentExpression<'a>) {
        self.found |= it.operator.is_logical();
        walk::walk_assignment_expression(self, it);
    }

    fn visit_big_int_literal(&mut self, _: &oxc_ast::ast::BigIntLiteral<'a>) {
        self.found = true;
    }
}

// ---- 4. module scope -----------------------------------------------------

fn module_scope(source: &str) -> Result<Option<String>, SyntaxError> {
    let allocator = Allocator::default();
    let Some(program) = parse(&allocator, source) else {
        return Ok(None);
    };
    let text = |span: Span| &source[span.start as usize..span.end as usize];
    let mut operations = Vec::new();
    let mut statements = Vec::new();
    let mut dropped = false;
    let mut other = false;
    for statement in &program.body {
        match statement {
            Statement::ExpressionStatement(s)
                if matches!(
                    s.expression.without_parentheses(),
                    Expression::CallExpression(_)
                ) =>
            {
                operations.push(text(s.expression.span()));
            }
            Statement::ImportDeclaration(i) if i.source.value.starts_with("@openfn/") => {
                dropped = true;
            }
            Statement::EmptyStatement(_) => {}
            Statement::VariableDeclaration(_) | Statement::FunctionDeclaration(_) => {
                statements.push(text(statement.span()))
            }
            _ => other = true,
        }
    }
    // Only declarations beside the operations make a module of the job.
    // Anything else at the top level (`none`, an assignment, an `if`) is
    // left to core, which ignores it or takes the calls inside it, as it
    // always has: jobs written for the original run as they did.
    if other || (statements.is_empty() && !dropped) {
        return Ok(None);
    }
    if statements.is_empty() {
        return Ok(Some(operations.join(";\n") + ";\n"));
    }
    // The job's statements first, then its operations, as a module runs its
    // body before `export default [...]` is read.
    let mut out = String::from("(function () {\n");
    for s in statements {
        out.push_str(s);
        out.push('\n');
    }
    out.push_str("return (function (operations) { return function (state) { return operations.reduce(function (p, operation) { return p.then(operation); }, Promise.resolve(state)); }; })([\n");
    out.push_str(&operations.join(",\n"));
    out.push_str("\n]);\n})();\n");
    Ok(Some(out))
}

#[cfg(test)]
mod tests;
