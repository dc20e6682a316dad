//! What the host adds to a module before compiling it. The compiled code
//! carries the additions, so a module read from the code cache needs no
//! preparation (the cache's key names it: `PREPARATION`).
//!
//! - Reset exports (see `snapshot`): a module whose instances can be put
//!   back to their start gets its mutable globals exported under reserved
//!   names, and a marker export. Modules whose code changes tables or
//!   drops segments are left as they are and never reused.
//! - Merged entries: guest calls the host always makes back to back run
//!   as one entry into the guest, which saves wasmtime's entry and exit
//!   (300 to 400 instructions each): `proxy_on_context_create` with the
//!   first `proxy_on_request_headers` of an HTTP context (`START_REQUEST`),
//!   `proxy_on_done` with `proxy_on_delete` (`END_CONTEXT`), and, for a
//!   chain of one filter, whose log and end follow each other,
//!   `proxy_on_log` with both (`LOG_END`). Each writes the place of the
//!   callback it is in to a global (`STAGE`) first, so that a failure
//!   names the right one.
//!
//! Every addition is appended (a type, a function, a global, exports):
//! nothing the module has moves.

use wasmparser::{CompositeInnerType, ExternalKind, FuncType, Operator, Parser, Payload, TypeRef, ValType};

/// Export names that start with this are the host's: a module that uses
/// one is refused.
pub const RESERVED_PREFIX: &str = "ngx_proxy_wasm:";

/// The export that marks a module prepared for reset: its memory, once
/// more.
pub const RESET_MARKER: &str = "ngx_proxy_wasm:reset";

/// The export name of a mutable global the host restores; the index
/// follows.
pub const GLOBAL_EXPORT_PREFIX: &str = "ngx_proxy_wasm:global:";

/// `(context, root, headers[, end_of_stream]) -> action`: on_context_create
/// then on_request_headers (with `end_of_stream` when it takes one).
pub const START_REQUEST: &str = "ngx_proxy_wasm:start_request";

/// `(context)`: on_done (its result dropped) then on_delete.
pub const END_CONTEXT: &str = "ngx_proxy_wasm:end_context";

/// `(context)`: on_log, then on_done (its result dropped) and on_delete.
pub const LOG_END: &str = "ngx_proxy_wasm:log_end";

/// The `i32` global a merged entry sets to the place (0, 1, 2) of the
/// callback it runs.
pub const STAGE: &str = "ngx_proxy_wasm:stage";

/// What `prepare` does, for the code cache's key: code prepared another
/// way is not found.
pub const PREPARATION: &str = "reset exports 1, merged entries 2";

/// The module to compile, with what the host adds (None: compile it as it
/// is). Text is turned into binary first. An error: the module uses a
/// reserved export name. A module it cannot read is left to the compiler
/// to reject.
pub fn prepare(bytes: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let Ok(binary) = wat::parse_bytes(bytes) else {
        return Ok(None);
    };
    let Some(module) = read(&binary) else {
        return Ok(None);
    };
    if let Some(name) = module
        .exports
        .iter()
        .map(|(name, _, _)| name)
        .find(|name| name.starts_with(RESERVED_PREFIX))
    {
        return Err(format!("export \"{name}\" has a name reserved for the host"));
    }
    let mut additions = Additions::default();
    if module.resettable && module.memories == 1 {
        for &index in &module.mutable_globals {
            additions.export(
                format!("{GLOBAL_EXPORT_PREFIX}{index}"),
                ExternalKind::Global,
                index,
            );
        }
        additions.export(RESET_MARKER.into(), ExternalKind::Memory, 0);
    }
    merge_entries(&module, &mut additions);
    if additions.is_empty() {
        return Ok(None);
    }
    Ok(Some(additions.apply(&binary, &module)))
}

/// What `prepare` reads of a module.
#[derive(Default)]
struct Module {
    /// Each section: its id, where its header starts, and its content.
    sections: Vec<(u8, usize, std::ops::Range<usize>)>,
    /// Function types by type index (None: another kind of type).
    types: Vec<Option<FuncType>>,
    /// The type index of each function, imported ones first.
    functions: Vec<u32>,
    imported_functions: u32,
    globals: u32,
    mutable_globals: Vec<u32>,
    exports: Vec<(String, ExternalKind, u32)>,
    memories: usize,
    /// Nothing outside memory and globals changes: see `read`.
    resettable: bool,
}

/// None if the module cannot be read. Its instances cannot be put back to
/// a snapshot (`resettable` false) if it imports a mutable global, a
/// memory or a table, has a shared memory, or its code changes tables or
/// drops segments (state outside memory and globals).
fn read(bytes: &[u8]) -> Option<Module> {
    let mut module = Module {
        resettable: true,
        ..Module::default()
    };
    let mut section_start = 0;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.ok()?;
        match &payload {
            Payload::Version { range, .. } => section_start = range.end as usize,
            Payload::TypeSection(reader) => {
                for group in reader.clone() {
                    for ty in group.ok()?.into_types() {
                        module.types.push(match ty.composite_type.inner {
                            CompositeInnerType::Func(func) => Some(func),
                            _ => None,
                        });
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports() {
                    match import.ok()?.ty {
                        TypeRef::Func(ty) => {
                            module.functions.push(ty);
                            module.imported_functions += 1;
                        }
                        TypeRef::Global(global) => {
                            module.resettable &= !global.mutable;
                            module.globals += 1;
                        }
                        TypeRef::Memory(_) | TypeRef::Table(_) => module.resettable = false,
                        _ => {}
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader.clone() {
                    module.functions.push(ty.ok()?);
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader.clone() {
                    module.resettable &= !memory.ok()?.shared;
                    module.memories += 1;
                }
            }
            Payload::GlobalSection(reader) => {
                for global in reader.clone() {
                    if global.ok()?.ty.mutable {
                        module.mutable_globals.push(module.globals);
                    }
                    module.globals += 1;
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader.clone() {
                    let export = export.ok()?;
                    module
                        .exports
                        .push((export.name.to_string(), export.kind, export.index));
                }
            }
            Payload::CodeSectionEntry(body) => {
                let mut operators = body.get_operators_reader().ok()?;
                while module.resettable && !operators.eof() {
                    module.resettable = !changes_tables_or_segments(&operators.read().ok()?);
                }
            }
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            let (start, end) = (range.start as usize, range.end as usize);
            module.sections.push((id, section_start, start..end));
            section_start = end;
        }
    }
    Some(module)
}

fn changes_tables_or_segments(operator: &Operator) -> bool {
    matches!(
        operator,
        Operator::TableSet { .. }
            | Operator::TableGrow { .. }
            | Operator::TableFill { .. }
            | Operator::TableCopy { .. }
            | Operator::TableInit { .. }
            | Operator::ElemDrop { .. }
            | Operator::DataDrop { .. }
    )
}

impl Module {
    /// The index of an exported function with this signature.
    fn function(&self, name: &str, params: &[ValType], results: &[ValType]) -> Option<u32> {
        let index = self
            .exports
            .iter()
            .find(|(export, kind, _)| export == name && *kind == ExternalKind::Func)?
            .2;
        let ty = self
            .types
            .get(*self.functions.get(index as usize)? as usize)?
            .as_ref()?;
        (ty.params() == params && ty.results() == results).then_some(index)
    }
}

/// Adds the merged entries whose callbacks the module exports.
fn merge_entries(module: &Module, additions: &mut Additions) {
    use ValType::I32;
    let create = module.function("proxy_on_context_create", &[I32, I32], &[]);
    // ABI 0.2.0 and later pass end_of_stream
    let headers = module
        .function("proxy_on_request_headers", &[I32, I32, I32], &[I32])
        .map(|f| (f, true))
        .or_else(|| {
            module
                .function("proxy_on_request_headers", &[I32, I32], &[I32])
                .map(|f| (f, false))
        });
    let log = module.function("proxy_on_log", &[I32], &[]);
    let done = module.function("proxy_on_done", &[I32], &[I32]);
    let delete = module.function("proxy_on_delete", &[I32], &[]);
    let stage = module.globals + additions.globals.len() as u32;
    let mut merged = false;
    let set_stage = |code: &mut Vec<u8>, place: u8| {
        code.extend([0x41, place, 0x24]); // i32.const place; global.set
        write_leb(code, stage);
    };
    let call = |code: &mut Vec<u8>, function: u32| {
        code.push(0x10);
        write_leb(code, function);
    };
    if let (Some(create), Some((headers, end_of_stream))) = (create, headers) {
        let mut code = vec![0]; // no locals
        set_stage(&mut code, 0);
        code.extend([0x20, 0, 0x20, 1]); // the context, the root
        call(&mut code, create);
        set_stage(&mut code, 1);
        code.extend([0x20, 0, 0x20, 2]); // the context, the headers
        if end_of_stream {
            code.extend([0x20, 3]);
        }
        call(&mut code, headers);
        code.push(0x0b);
        let params = if end_of_stream { 4 } else { 3 };
        additions.function(module, START_REQUEST, (params, 1), code);
        merged = true;
    }
    if let (Some(done), Some(delete)) = (done, delete) {
        // the end of a context, after what comes before it (on_log)
        let end = |code: &mut Vec<u8>, first: u8| {
            set_stage(code, first);
            code.extend([0x20, 0]);
            call(code, done);
            code.push(0x1a); // drop: what an HTTP context's on_done returns means nothing
            set_stage(code, first + 1);
            code.extend([0x20, 0]);
            call(code, delete);
            code.push(0x0b);
        };
        let mut code = vec![0];
        end(&mut code, 0);
        additions.function(module, END_CONTEXT, (1, 0), code);
        if let Some(log) = log {
            let mut code = vec![0];
            set_stage(&mut code, 0);
            code.extend([0x20, 0]);
            call(&mut code, log);
            end(&mut code, 1);
            additions.function(module, LOG_END, (1, 0), code);
        }
        merged = true;
    }
    if merged {
        // a mutable i32, 0
        additions.globals.push(vec![0x7f, 0x01, 0x41, 0x00, 0x0b]);
        additions.export(STAGE.into(), ExternalKind::Global, stage);
    }
}

/// Entries appended to a module's sections, encoded.
#[derive(Default)]
struct Additions {
    types: Vec<Vec<u8>>,
    /// Each function's type index, encoded.
    functions: Vec<Vec<u8>>,
    code: Vec<Vec<u8>>,
    globals: Vec<Vec<u8>>,
    exports: Vec<Vec<u8>>,
}

impl Additions {
    /// Every addition has an export.
    fn is_empty(&self) -> bool {
        self.exports.is_empty()
    }

    fn export(&mut self, name: String, kind: ExternalKind, index: u32) {
        let mut entry = Vec::with_capacity(name.len() + 8);
        write_leb(&mut entry, name.len() as u32);
        entry.extend_from_slice(name.as_bytes());
        entry.push(kind as u8);
        write_leb(&mut entry, index);
        self.exports.push(entry);
    }

    /// An exported function with its body (locals and code), of a new
    /// type: `(params, results)` counts of `i32`s.
    fn function(&mut self, module: &Module, name: &str, (params, results): (u8, u8), body: Vec<u8>) {
        let mut ty = vec![0x60, params];
        ty.extend(std::iter::repeat_n(0x7f, params.into()));
        ty.push(results);
        ty.extend(std::iter::repeat_n(0x7f, results.into()));
        let mut type_index = Vec::new();
        write_leb(&mut type_index, (module.types.len() + self.types.len()) as u32);
        let index = (module.functions.len() + self.functions.len()) as u32;
        self.types.push(ty);
        self.functions.push(type_index);
        let mut code = Vec::with_capacity(body.len() + 2);
        write_leb(&mut code, body.len() as u32);
        code.extend_from_slice(&body);
        self.code.push(code);
        self.export(name.into(), ExternalKind::Func, index);
    }

    /// The module with the entries appended to their sections; a section
    /// it lacks is made in its place.
    fn apply(&self, bytes: &[u8], module: &Module) -> Vec<u8> {
        let added: [(u8, &[Vec<u8>]); 5] = [
            (1, &self.types),
            (3, &self.functions),
            (6, &self.globals),
            (7, &self.exports),
            (10, &self.code),
        ];
        let mut out = Vec::with_capacity(bytes.len() + 1024);
        out.extend_from_slice(&bytes[..8]); // magic and version
        let mut pending: Vec<(u8, &[Vec<u8>])> = added
            .into_iter()
            .filter(|(_, entries)| !entries.is_empty())
            .collect();
        for (id, start, content) in &module.sections {
            // a section the module lacks goes before the first that follows it
            while let Some(&(missing, entries)) = pending.first() {
                if *id == 0 || order(missing) >= order(*id) {
                    break;
                }
                write_section(&mut out, missing, &[], entries);
                pending.remove(0);
            }
            match pending.first() {
                Some(&(target, entries)) if target == *id => {
                    write_section(&mut out, *id, &bytes[content.clone()], entries);
                    pending.remove(0);
                }
                _ => out.extend_from_slice(&bytes[*start..content.end]),
            }
        }
        for (missing, entries) in pending {
            write_section(&mut out, missing, &[], entries);
        }
        out
    }
}

/// Where a section goes among the others (their required order).
fn order(id: u8) -> u8 {
    match id {
        13 => 6,         // tags, before globals
        6..=9 => id + 1, // globals, exports, start, elements
        12 => 11,        // data count, before code
        10 | 11 => id + 2,
        _ => id,
    }
}

/// A vector section: `content` (its count, then its entries) with
/// `entries` appended.
fn write_section(out: &mut Vec<u8>, id: u8, content: &[u8], entries: &[Vec<u8>]) {
    let (count, skip) = if content.is_empty() {
        (0, 0)
    } else {
        read_leb(content)
    };
    let mut section = Vec::with_capacity(content.len() + entries.iter().map(Vec::len).sum::<usize>() + 5);
    write_leb(&mut section, count + entries.len() as u32);
    section.extend_from_slice(&content[skip..]);
    for entry in entries {
        section.extend_from_slice(entry);
    }
    out.push(id);
    write_leb(out, section.len() as u32);
    out.extend_from_slice(&section);
}

/// An unsigned LEB128 number at the start of `bytes`, and its length
/// (the parser already checked it).
fn read_leb(bytes: &[u8]) -> (u32, usize) {
    let mut value = 0u32;
    for (i, byte) in bytes.iter().enumerate().take(5) {
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (value, i + 1);
        }
    }
    (value, bytes.len().min(5))
}

fn write_leb(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exports(bytes: &[u8]) -> Vec<String> {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, bytes).unwrap();
        module.exports().map(|e| e.name().to_string()).collect()
    }

    #[test]
    fn mutable_globals_are_exported_and_the_module_still_compiles() {
        let wat = r#"(module
            (import "env" "g" (global i32))
            (global $sp (mut i32) (i32.const 1024))
            (global i32 (i32.const 7))
            (global $other (mut i64) (i64.const 0))
            (memory (export "memory") 1)
            (func (export "f") (global.set $sp (i32.const 5))))"#;
        let rewritten = prepare(wat.as_bytes()).unwrap().expect("resettable");
        assert_eq!(
            exports(&rewritten),
            [
                "memory",
                "f",
                "ngx_proxy_wasm:global:1",
                "ngx_proxy_wasm:global:3",
                "ngx_proxy_wasm:reset"
            ]
        );
    }

    #[test]
    fn a_module_without_exports_gets_an_export_section_in_its_place() {
        let wat = r#"(module (global (mut i32) (i32.const 0)) (memory 1) (func) (start 0) (data (i32.const 0) "x"))"#;
        let rewritten = prepare(&wat::parse_str(wat).unwrap())
            .unwrap()
            .expect("rewritten");
        assert_eq!(
            exports(&rewritten),
            ["ngx_proxy_wasm:global:0", "ngx_proxy_wasm:reset"]
        );
    }

    #[test]
    fn modules_with_state_outside_memory_and_globals_are_not_reset() {
        for wat in [
            r#"(module (memory 1) (table 1 funcref) (func (table.set 0 (i32.const 0) (ref.null func))))"#,
            r#"(module (memory 1) (table 1 funcref) (func (drop (table.grow 0 (ref.null func) (i32.const 1)))))"#,
            r#"(module (memory 1) (data "x") (func (data.drop 0)))"#,
            r#"(module (import "env" "g" (global (mut i32))) (memory 1))"#,
            r#"(module (import "env" "m" (memory 1)))"#,
            r#"(module (memory 1) (memory 1))"#,
            r#"(module (global (mut i32) (i32.const 0)))"#,
        ] {
            assert_eq!(prepare(wat.as_bytes()), Ok(None), "{wat}");
        }
        // unreadable: left to the compiler
        assert_eq!(prepare(b"\0asm\x01\0\0\0\x07\xff"), Ok(None));
    }

    #[test]
    fn reserved_export_names_are_refused() {
        let wat = r#"(module (memory 1) (global (export "ngx_proxy_wasm:reset") (mut i32) (i32.const 0)))"#;
        assert_eq!(
            prepare(wat.as_bytes()),
            Err("export \"ngx_proxy_wasm:reset\" has a name reserved for the host".into())
        );
    }

    /// A filter's callbacks that record their order; `trap` makes the
    /// callback with that number trap.
    fn filter(headers_params: &str, trap: u32) -> String {
        format!(
            r#"(module
            (import "env" "seen" (func $seen (param i32)))
            (memory (export "memory") 1)
            (func $maybe_trap (param i32) (if (i32.eq (local.get 0) (i32.const {trap})) (then unreachable)))
            (func (export "proxy_on_context_create") (param i32 i32)
                (call $seen (i32.const 1)) (call $seen (local.get 0)) (call $seen (local.get 1))
                (call $maybe_trap (i32.const 1)))
            (func (export "proxy_on_request_headers") (param {headers_params}) (result i32)
                (call $seen (i32.const 2)) (call $seen (local.get 1))
                (call $maybe_trap (i32.const 2)) (i32.const 7))
            (func (export "proxy_on_done") (param i32) (result i32)
                (call $seen (i32.const 3)) (call $maybe_trap (i32.const 3)) (i32.const 0))
            (func (export "proxy_on_delete") (param i32)
                (call $seen (i32.const 4)) (call $maybe_trap (i32.const 4)))
            (func (export "proxy_on_log") (param i32)
                (call $seen (i32.const 5)) (call $maybe_trap (i32.const 5))))"#
        )
    }

    struct Instance {
        store: wasmtime::Store<Vec<i32>>,
        instance: wasmtime::Instance,
    }

    impl Instance {
        fn new(wat: &str) -> Instance {
            let bytes = prepare(wat.as_bytes()).unwrap().expect("merged entries added");
            let engine = wasmtime::Engine::default();
            let module = wasmtime::Module::new(&engine, bytes).unwrap();
            let mut linker = wasmtime::Linker::new(&engine);
            linker
                .func_wrap(
                    "env",
                    "seen",
                    |mut caller: wasmtime::Caller<'_, Vec<i32>>, value: i32| caller.data_mut().push(value),
                )
                .unwrap();
            let mut store = wasmtime::Store::new(&engine, Vec::new());
            let instance = linker.instantiate(&mut store, &module).unwrap();
            Instance { store, instance }
        }

        fn stage(&mut self) -> i32 {
            let stage = self.instance.get_global(&mut self.store, STAGE).unwrap();
            stage.get(&mut self.store).unwrap_i32()
        }
    }

    #[test]
    fn merged_entries_run_both_callbacks_in_order() {
        let mut t = Instance::new(&filter("i32 i32 i32", 0));
        let start = t
            .instance
            .get_typed_func::<(i32, i32, i32, i32), i32>(&mut t.store, START_REQUEST)
            .unwrap();
        assert_eq!(start.call(&mut t.store, (5, 1, 9, 1)).unwrap(), 7);
        assert_eq!(t.store.data(), &[1, 5, 1, 2, 9]);
        assert_eq!(t.stage(), 1);
        let end = t
            .instance
            .get_typed_func::<i32, ()>(&mut t.store, END_CONTEXT)
            .unwrap();
        end.call(&mut t.store, 5).unwrap();
        assert_eq!(&t.store.data()[5..], &[3, 4]);
        let log_end = t
            .instance
            .get_typed_func::<i32, ()>(&mut t.store, LOG_END)
            .unwrap();
        log_end.call(&mut t.store, 5).unwrap();
        assert_eq!(&t.store.data()[7..], &[5, 3, 4]);
        assert_eq!(t.stage(), 2);
    }

    #[test]
    fn abi_0_1_0_headers_take_no_end_of_stream() {
        let mut t = Instance::new(&filter("i32 i32", 0));
        let start = t
            .instance
            .get_typed_func::<(i32, i32, i32), i32>(&mut t.store, START_REQUEST)
            .unwrap();
        assert_eq!(start.call(&mut t.store, (5, 1, 9)).unwrap(), 7);
        assert_eq!(t.store.data(), &[1, 5, 1, 2, 9]);
    }

    #[test]
    fn the_stage_names_the_callback_that_trapped() {
        for (trap, stage, entry) in [
            (1, 0, START_REQUEST),
            (2, 1, START_REQUEST),
            (3, 0, END_CONTEXT),
            (4, 1, END_CONTEXT),
            (5, 0, LOG_END),
            (3, 1, LOG_END),
            (4, 2, LOG_END),
        ] {
            let mut t = Instance::new(&filter("i32 i32 i32", trap));
            let result = match entry {
                START_REQUEST => t
                    .instance
                    .get_typed_func::<(i32, i32, i32, i32), i32>(&mut t.store, entry)
                    .unwrap()
                    .call(&mut t.store, (5, 1, 9, 1))
                    .map(drop),
                _ => t
                    .instance
                    .get_typed_func::<i32, ()>(&mut t.store, entry)
                    .unwrap()
                    .call(&mut t.store, 5),
            };
            assert!(result.is_err(), "callback {trap}");
            assert_eq!(t.stage(), stage, "callback {trap}");
        }
    }

    #[test]
    fn callbacks_of_other_types_are_not_merged() {
        let wat = r#"(module
            (func (export "proxy_on_context_create") (param i32))
            (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
            (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1)))"#;
        assert_eq!(prepare(wat.as_bytes()), Ok(None));
    }

    #[test]
    fn additions_keep_a_module_with_every_section_valid() {
        // types, imports, functions, a table, memory, globals, exports,
        // start, elements, data count, code, data and a custom section
        let wat = r#"(module
            (type $t (func))
            (import "env" "seen" (func $seen (param i32)))
            (table 2 funcref)
            (memory 1)
            (global $g (mut i32) (i32.const 3))
            (func $init (global.set $g (i32.const 4)))
            (start $init)
            (elem (i32.const 0) $init)
            (func (export "proxy_on_done") (param i32) (result i32)
                (memory.init 0 (i32.const 0) (i32.const 0) (i32.const 1)) (global.get $g))
            (func (export "proxy_on_delete") (param i32) (call $seen (global.get $g)))
            (data "x")
            (@custom "name-ish" "bytes"))"#;
        let mut t = Instance::new(wat);
        let end = t
            .instance
            .get_typed_func::<i32, ()>(&mut t.store, END_CONTEXT)
            .unwrap();
        end.call(&mut t.store, 5).unwrap();
        assert_eq!(t.store.data(), &[4]);
        let names: Vec<String> = t
            .instance
            .exports(&mut t.store)
            .map(|e| e.name().to_string())
            .collect();
        assert!(names.contains(&RESET_MARKER.to_string()), "{names:?}");
    }
}
