;; A minimal filter of Proxy-Wasm ABI 0.2.0 (the ABI the Go SDKs declare):
;; logs each request and adds a response header.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "abi 0.2.0 on_request_headers")
  (data (i32.const 64) "x-abi")
  (data (i32.const 80) "0.2.0")
  (global $heap (mut i32) (i32.const 1024))

  (func (export "proxy_abi_version_0_2_0"))
  (func (export "malloc") (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $ptr))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 16) (i32.const 28)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add_header (i32.const 2) (i32.const 64) (i32.const 5)
                            (i32.const 80) (i32.const 5)))
    (i32.const 0))
)
