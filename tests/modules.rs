//! Loading modules and starting filters: what makes a configuration fail.

mod common;

use common::{runtime, wat, wat_text, MockHost};

fn load_error(path: &std::path::Path) -> String {
    let mut runtime = runtime(MockHost::new());
    runtime.load_module("m", path, b"").unwrap_err().to_string()
}

#[test]
fn unreadable_file() {
    let error = load_error(std::path::Path::new("/nonexistent/filter.wasm"));
    assert!(
        error.starts_with("cannot read \"/nonexistent/filter.wasm\""),
        "{error}"
    );
}

#[test]
fn invalid_module() {
    let error = load_error(&wat_text("(module (func $f (result i32)))"));
    assert!(error.starts_with("invalid module"), "{error}");
    assert!(!error.contains('\n'), "one line: {error}");
    let error = load_error(&wat_text("this is not wasm"));
    assert!(error.starts_with("invalid module"), "{error}");
}

#[test]
fn not_a_proxy_wasm_module() {
    let error = load_error(&wat("no_abi.wat"));
    assert!(error.contains("not a Proxy-Wasm module"), "{error}");
}

#[test]
fn callback_of_the_wrong_type() {
    let error = load_error(&wat("bad_signature.wat"));
    assert_eq!(
        error,
        "export \"proxy_on_request_headers\" is a function (i32, i32) -> (i32), \
         expected a function (i32, i32, i32) -> (i32) for Proxy-Wasm ABI 0.2.1"
    );
}

#[test]
fn required_exports() {
    let error = load_error(&wat("no_context_create.wat"));
    assert!(error.contains("no \"proxy_on_context_create\" export"), "{error}");
    let no_memory = wat_text(
        r#"(module (func (export "proxy_abi_version_0_2_1"))
           (func (export "malloc") (param i32) (result i32) (i32.const 0))
           (func (export "proxy_on_context_create") (param i32 i32)))"#,
    );
    assert!(load_error(&no_memory).contains("no \"memory\" export"));
    let no_allocator = wat_text(
        r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1"))
           (func (export "proxy_on_context_create") (param i32 i32)))"#,
    );
    assert!(load_error(&no_allocator).contains("proxy_on_memory_allocate"));
}

#[test]
fn imports_are_checked_when_loading() {
    let error = load_error(&wat("unknown_import.wat"));
    assert!(
        error.contains("cannot link") && error.contains("proxy_frobnicate"),
        "{error}"
    );
    let error = load_error(&wat("bad_import_type.wat"));
    assert!(
        error.contains("cannot link") && error.contains("proxy_log"),
        "{error}"
    );
}

#[test]
fn abi_versions() {
    let module = |markers: &str| {
        wat_text(&format!(
            r#"(module (memory (export "memory") 1) {markers}
               (func (export "malloc") (param i32) (result i32) (i32.const 0))
               (func (export "proxy_on_context_create") (param i32 i32))
               (func (export "proxy_on_request_headers") (param i32 i32) (result i32) (i32.const 0)))"#
        ))
    };
    // A 0.1.0 module has two-parameter header callbacks...
    let mut rt = runtime(MockHost::new());
    rt.load_module("v1", &module(r#"(func (export "proxy_abi_version_0_1_0"))"#), b"")
        .unwrap();
    // ...which a 0.2.x module may not have.
    let error = load_error(&module(r#"(func (export "proxy_abi_version_0_2_0"))"#));
    assert!(error.contains("for Proxy-Wasm ABI 0.2.0"), "{error}");
    // The newest declared version wins.
    let error = load_error(&module(
        r#"(func (export "proxy_abi_version_0_1_0")) (func (export "proxy_abi_version_0_2_1"))"#,
    ));
    assert!(error.contains("for Proxy-Wasm ABI 0.2.1"), "{error}");
    rt.load_module("v020", &wat("abi_0_2_0.wat"), b"").unwrap();
}

#[test]
fn duplicate_module_names() {
    let mut rt = runtime(MockHost::new());
    rt.load_module("m", &wat("abi_0_2_0.wat"), b"").unwrap();
    let error = rt.load_module("m", &wat("abi_0_2_0.wat"), b"").unwrap_err();
    assert_eq!(error.to_string(), "module \"m\" is already defined");
}

/// Modules compile in parallel; a failure names the first module (in the
/// configuration's order) that failed, and keeps none of them.
#[test]
fn modules_load_together() {
    use ngx_proxy_wasm::runtime::ModuleSpec;
    let good = wat("abi_0_2_0.wat");
    let bad_type = wat("bad_signature.wat");
    let unlinkable = wat("unknown_import.wat");
    let spec = |name, path| ModuleSpec {
        name,
        path,
        vm_config: b"",
    };
    let mut rt = runtime(MockHost::new());
    let specs = [
        spec("a", &good),
        spec("b", &good),
        spec("c", &bad_type),
        spec("d", &unlinkable),
        spec("e", &good),
    ];
    let (failed, error) = rt.load_modules(&specs).unwrap_err();
    assert_eq!(failed, 2, "{error}");
    assert!(
        error
            .to_string()
            .starts_with("export \"proxy_on_request_headers\""),
        "{error}"
    );
    // nothing was kept: the same names load afterwards
    let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let many: Vec<_> = names.iter().map(|name| spec(name, &good)).collect();
    rt.load_modules(&many).unwrap();
    let again = [spec("x", &good), spec("h", &good)];
    let (failed, error) = rt.load_modules(&again).unwrap_err();
    assert_eq!(
        (failed, error.to_string()),
        (1, "module \"h\" is already defined".into())
    );
    let twice = [spec("y", &good), spec("y", &good)];
    assert_eq!(rt.load_modules(&twice).unwrap_err().0, 1);
}

#[test]
fn filters_start_at_configuration_time() {
    let host = MockHost::new();
    let mut rt = runtime(host);
    rt.load_module("hostile", &wat("hostile.wat"), b"").unwrap();
    rt.load_module("start", &wat("start_traps.wat"), b"").unwrap();
    assert_eq!(
        rt.add_filter("nope", b"").unwrap_err().to_string(),
        "unknown module \"nope\""
    );
    let error = rt.add_filter("start", b"").unwrap_err().to_string();
    assert_eq!(
        error,
        "module \"start\" failed to start: _initialize failed: wasm trap: wasm `unreachable` instruction executed"
    );
    assert!(
        host.logged("_initialize failed: wasm trap: wasm `unreachable` instruction executed")
            .is_some(),
        "{}",
        host.dump()
    );
    // Identical filters are one; another configuration is another filter.
    let a = rt.add_filter("hostile", b"x").unwrap();
    assert_eq!(rt.add_filter("hostile", b"x").unwrap(), a);
    assert_ne!(rt.add_filter("hostile", b"y").unwrap(), a);
    assert_eq!(rt.filters(), 2);
}

#[test]
fn zones_come_with_the_modules_before_any_filter() {
    use ngx_proxy_wasm::host::{ZoneKind, ZoneRef};
    use ngx_proxy_wasm::shared::zones::ZoneError;

    let host = MockHost::new();
    let mut rt = runtime(host);
    rt.load_module("m", &wat("abi_0_2_0.wat"), b"").unwrap();
    let kv = |index| ZoneRef {
        kind: ZoneKind::Kv,
        index,
    };
    rt.add_zone(kv(0), b"*", None).unwrap();
    // share= names the loaded modules only
    assert_eq!(
        rt.add_zone(kv(1), b"z", Some(vec![b"other".to_vec()])),
        Err(ZoneError::UnknownModule("other".into()))
    );
    rt.add_zone(kv(1), b"z", Some(vec![b"m".to_vec()])).unwrap();
    rt.add_filter("m", b"").unwrap();
    // the filters' instances hold the zones: the set is closed
    assert_eq!(rt.add_zone(kv(2), b"late", None), Err(ZoneError::TooLate));
}
