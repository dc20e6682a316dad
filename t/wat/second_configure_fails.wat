;; A filter whose on_configure fails for the second root context of an
;; instance: at configuration time each filter is checked in an instance
;; of its own and passes, but in a worker, where one instance runs every
;; filter of the module, the second filter fails to start.
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (global $configured (mut i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $ptr))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (global.set $configured (i32.add (global.get $configured) (i32.const 1)))
    (i32.le_u (global.get $configured) (i32.const 1)))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (i32.const 0))
)
