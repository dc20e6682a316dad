;; A filter that fails on purpose. The first byte of its plugin
;; configuration picks how on_request_headers fails:
;;   u  unreachable              d  integer division by zero
;;   r  unbounded recursion      m  out-of-bounds memory access
;;   e  proc_exit(1)               l  an endless loop
;;   g  memory.grow until refused, then unreachable
;; and "R" makes on_response_headers execute unreachable. Any other
;; configuration lets requests through.
(module
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (global $mode (mut i32) (i32.const 0))

  (func (export "proxy_abi_version_0_2_1"))

  ;; a bump allocator; the tests allocate a few bytes only
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap
      (i32.and (i32.add (i32.add (global.get $heap) (local.get $size)) (i32.const 7))
               (i32.const -8)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.shr_u (global.get $heap) (i32.const 16))
                                        (i32.const 1))))))
    (local.get $ptr))

  (func (export "proxy_on_context_create") (param i32 i32))

  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (if (i32.gt_u (local.get $size) (i32.const 0))
      (then
        ;; get_buffer_bytes(PLUGIN_CONFIGURATION, 0, 1, &ptr at 0, &size at 4)
        (drop (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 1)
                                (i32.const 0) (i32.const 4)))
        (global.set $mode (i32.load8_u (i32.load (i32.const 0))))))
    (i32.const 1))

  (func $recurse (call $recurse))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eq (global.get $mode) (i32.const 117)) (then unreachable))
    (if (i32.eq (global.get $mode) (i32.const 100))
      (then (drop (i32.div_u (i32.const 1)
                             (i32.sub (global.get $mode) (i32.const 100))))))
    (if (i32.eq (global.get $mode) (i32.const 114)) (then (call $recurse)))
    (if (i32.eq (global.get $mode) (i32.const 109))
      (then (drop (i32.load (i32.const -4)))))
    (if (i32.eq (global.get $mode) (i32.const 101))
      (then (call $proc_exit (i32.const 1))))
    (if (i32.eq (global.get $mode) (i32.const 108))
      (then (loop $forever (br $forever))))
    (if (i32.eq (global.get $mode) (i32.const 103))
      (then
        (loop $more
          (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
        unreachable))
    (i32.const 0))

  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (if (i32.eq (global.get $mode) (i32.const 82)) (then unreachable))
    (i32.const 0))
)
