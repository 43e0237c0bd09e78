use super::*;

fn compiled(source: &str) -> String {
    compile(source)
        .unwrap_or_else(|e| panic!("{source}: {e}"))
        .unwrap_or_else(|| source.to_string())
}

fn squash(code: &str) -> String {
    code.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn jobs_core_already_runs_are_left_as_written() {
    for source in [
        "fn(state => state)",
        "each('$.data.items[*]', fn(s => s));\nget('x', {}, s => s);",
        "fn(state => { const $ = 1; return { ...state, n: $ }; })",
        "fn(async state => { for await (const x of []) {} return state; })",
        "fn(state => $)",
        // The original microservice's sample job: core runs it as nothing.
        "none",
        "const x = 1;\nx = 2;\nfn(s => s);",
        "fn(state => {\n  return state;\n);\n", // a syntax error stays core's to report
    ] {
        assert_eq!(compile(source), Ok(None), "{source}");
    }
}

#[test]
fn lazy_state_becomes_a_function_of_state_around_the_operations_argument() {
    assert_eq!(
        compiled("get($.data.url)"),
        "get((state) => (state.data.url))"
    );
    assert_eq!(
        compiled("post('/x', { body: $.data, id: $.data['id'] })"),
        "post('/x', (state) => ({ body: state.data, id: state.data['id'] }))"
    );
    assert_eq!(
        compiled("each($.data.items, upsert('t', $.data))"),
        "each((state) => (state.data.items), upsert('t', (state) => (state.data)))"
    );
    assert_eq!(
        compiled("get(`/p/${$.data.id}`)"),
        "get((state) => (`/p/${state.data.id}`))"
    );
    // A method called on lazy state: the call is the argument.
    assert_eq!(
        compiled("fnIf($.data.items.includes('a'), fn(s => s))"),
        "fnIf((state) => (state.data.items.includes('a')), fn(s => s))"
    );
    // Already a function of `state`: only `$` is renamed.
    assert_eq!(
        compiled("fn(state => ({ ...state, copy: $.data.a }))"),
        "fn(state => ({ ...state, copy: state.data.a }))"
    );
}

#[test]
fn a_dollar_the_job_binds_itself_is_not_lazy_state() {
    assert_eq!(compile("fn(($) => get($.data.url))"), Ok(None));
    assert_eq!(
        compile("fn(state => { const $ = state; return $.data; })"),
        Ok(None)
    );
}

#[test]
fn lazy_state_where_the_compiler_refuses_it_is_an_error_with_its_place() {
    let e = compile("fn(state => state);\nconst x = $.data.x;").unwrap_err();
    assert_eq!((e.line, e.column), (2, 11), "{e}");
    assert!(e.message.contains("must be inside an expression"), "{e}");
    let e = compile("fn(state => { return $.data; })").unwrap_err();
    assert!(e.message.contains("must be inside an expression"), "{e}");
    let e = compile("fn(s => $.data)").unwrap_err();
    assert!(
        e.message.contains("\"s\" should be called \"state\""),
        "{e}"
    );
}

#[test]
fn a_promise_chain_after_an_operation_is_one_deferred_operation() {
    let out = squash(&compiled(
        "get('/x').then(s => ({ ...s, a: 1 })).then(s => s)",
    ));
    assert!(
        out.starts_with(&format!("{}(get('/x'), (p) => p.then(s =>", squash(DEFER))),
        "{out}"
    );
    assert!(out.ends_with(".then(s => s))"), "{out}");
    // A catch straight after the operation handles its failure.
    let out = squash(&compiled("fn(s => s).catch(e => ({ failed: true }))"));
    assert!(
        out.ends_with("(fn(s => s), undefined, e => ({ failed: true }))"),
        "{out}"
    );
    let out = squash(&compiled("fn(s => s).catch(e => e).then(s => s)"));
    assert!(
        out.ends_with("(fn(s => s), (p) => p.then(s => s), e => e)"),
        "{out}"
    );
    // Inside a function it is the job's own promise, left alone.
    assert_eq!(
        compile("fn(state => fetchThing().then(x => state))"),
        Ok(None)
    );
}

#[test]
fn newer_syntax_is_lowered_to_what_core_parses() {
    let out = compiled("fn(state => ({ ...state, n: state.data?.items?.length ?? 0 }))");
    assert!(!out.contains("?.") && !out.contains("??"), "{out}");
    assert!(out.contains("state.data"), "{out}");
    // A temporary at the top level is kept in the job's own scope.
    let out = compiled("get(config?.url)");
    assert!(!out.contains("?."), "{out}");
    assert!(out.starts_with("(function () {"), "{out}");
}

#[test]
fn statements_beside_the_operations_run_first_in_one_scope() {
    let out = compiled(
        "import { fn } from '@openfn/language-common';\nconst mapping = { a: 'b' };\nfn(state => ({ ...state, m: mapping }));\nfunction twice(n) { return n * 2; }\nfn(state => ({ ...state, n: twice(2) }));\n",
    );
    assert!(!out.contains("import"), "{out}");
    let mapping = out.find("const mapping").unwrap();
    let twice = out.find("function twice").unwrap();
    let first_op = out.find("fn(state => ({ ...state, m: mapping }))").unwrap();
    assert!(mapping < first_op && twice < first_op, "{out}");
    // Only imports to drop: the operations stay top-level calls.
    assert_eq!(
        compiled("import { fn } from '@openfn/language-common';\nfn(s => s);"),
        "fn(s => s);\n"
    );
}

#[test]
fn edits_at_one_offset_keep_their_order() {
    let mut edits = Edits::default();
    edits.wrap(Span::new(0, 3), "<", ">");
    edits.replace(Span::new(0, 1), "X");
    assert_eq!(edits.apply("abc").unwrap(), "<Xbc>");
}
