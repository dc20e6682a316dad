;; A network filter without an SDK that exports only proxy_on_new_connection
;; (and the close callbacks): it logs each connection and lets it through.
;; Its connections' data does not go through the chain at all.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))

  (memory (export "memory") 1)

  (data (i32.const 1024) "accepted a connection")   ;; 21 bytes
  (data (i32.const 1056) "downstream closed")       ;; 17 bytes
  (data (i32.const 1088) "upstream closed")         ;; 15 bytes

  (func (export "proxy_abi_version_0_2_1"))

  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (select (i32.const 4096) (i32.const 0) (i32.le_u (local.get $size) (i32.const 61440))))

  (func (export "proxy_on_context_create") (param i32 i32))

  (func (export "proxy_on_new_connection") (param i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 1024) (i32.const 21)))
    (i32.const 0))

  (func (export "proxy_on_downstream_connection_close") (param i32 i32)
    (drop (call $log (i32.const 2) (i32.const 1056) (i32.const 17))))

  (func (export "proxy_on_upstream_connection_close") (param i32 i32)
    (drop (call $log (i32.const 2) (i32.const 1088) (i32.const 15)))))
