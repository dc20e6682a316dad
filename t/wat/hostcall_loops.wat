;; The micro-benchmark's filter (benches/hostcalls.rs): on_request_headers
;; calls one host function 1000 times, so that the callback's time over
;; 1000 is the cost of that host function. The first byte of the plugin
;; configuration picks it:
;;   v  get_header_map_value(request, "x-request-id")
;;   p  get_header_map_pairs(request)
;;   a  add_header_map_value(request, "x-bench", "42")
;;   b  get_buffer_bytes(plugin configuration, 0, 16)
;;   l  log at debug level (below the host's level)
(module
  (import "env" "proxy_get_header_map_value"
    (func $get_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_pairs"
    (func $get_pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_value (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $op (mut i32) (i32.const 0))

  ;; 0 and 4: where results are returned; 16..: names and values
  (data (i32.const 16) "x-request-id")
  (data (i32.const 32) "x-bench")
  (data (i32.const 48) "42")
  (data (i32.const 64) "a debug line that nobody reads")

  (func (export "proxy_abi_version_0_2_1"))

  ;; results are dropped at once: every allocation can share one block
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (if (i32.gt_u (local.get $size) (i32.const 61440)) (then unreachable))
    (i32.const 4096))

  (func (export "proxy_on_context_create") (param i32 i32))

  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    ;; get_buffer_bytes(PLUGIN_CONFIGURATION, 0, 1, &ptr at 0, &size at 4)
    (drop (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 1)
                            (i32.const 0) (i32.const 4)))
    (global.set $op (i32.load8_u (i32.load (i32.const 0))))
    (i32.const 1))

  (func $once
    (if (i32.eq (global.get $op) (i32.const 118)) ;; v
      (then (drop (call $get_value (i32.const 0) (i32.const 16) (i32.const 12)
                                   (i32.const 0) (i32.const 4)))
            (return)))
    (if (i32.eq (global.get $op) (i32.const 112)) ;; p
      (then (drop (call $get_pairs (i32.const 0) (i32.const 0) (i32.const 4)))
            (return)))
    (if (i32.eq (global.get $op) (i32.const 97)) ;; a
      (then (drop (call $add_value (i32.const 0) (i32.const 32) (i32.const 7)
                                   (i32.const 48) (i32.const 2)))
            (return)))
    (if (i32.eq (global.get $op) (i32.const 98)) ;; b
      (then (drop (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 16)
                                    (i32.const 0) (i32.const 4)))
            (return)))
    (drop (call $log (i32.const 1) (i32.const 64) (i32.const 30))))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32)
    (loop $again
      (call $once)
      (br_if $again (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 1)))
                              (i32.const 1000))))
    (i32.const 0))
)
