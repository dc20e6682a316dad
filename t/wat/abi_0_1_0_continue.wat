;; An ABI 0.1.0 filter that pauses both header callbacks after continuing
;; them with proxy_continue_request / proxy_continue_response: neither
;; request nor response may stay held.
(module
  (import "env" "proxy_continue_request" (func $continue_request (result i32)))
  (import "env" "proxy_continue_response" (func $continue_response (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "continued")
  (global $heap (mut i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_1_0"))
  (func (export "malloc") (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $ptr))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32) (result i32)
    (if (i32.eqz (call $continue_request))
      (then (drop (call $log (i32.const 2) (i32.const 16) (i32.const 9)))))
    (i32.const 1))
  (func (export "proxy_on_response_headers") (param i32 i32) (result i32)
    (drop (call $continue_response))
    (i32.const 1)))
