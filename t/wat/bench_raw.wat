;; The benchmark filter's `headers` mode without an SDK: reads the request's
;; x-request-id and adds it to the response as x-bench ("none" when absent).
;; What is left of a filter's cost with no guest code to speak of is the
;; host's own (bench/bench.py, scenario 12).
;;
;; Memory: 16 bytes..64 KiB is the scratch area the host writes returned values
;; into (one at a time: each is copied out before the next host call);
;; from 64 KiB, 1024 slots of 256 bytes keep each context's value (a
;; context id picks its slot: 1024 requests in flight at most, as in the
;; benchmark). Callbacks it does not need are not exported.
(module
  (import "env" "proxy_get_header_map_value"
    (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 6)

  (data (i32.const 327680) "x-request-id")   ;; 12 bytes
  (data (i32.const 327696) "x-bench")        ;; 7 bytes
  (data (i32.const 327712) "none")           ;; 4 bytes
  ;; where the host writes the address and the length of a returned value
  (global $value_ptr i32 (i32.const 327728))
  (global $value_len i32 (i32.const 327732))

  (func (export "proxy_abi_version_0_2_1"))

  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    ;; address 0 would read as a failed allocation
    (select (i32.const 16) (i32.const 0) (i32.le_u (local.get $size) (i32.const 65520))))

  (func (export "proxy_on_context_create") (param i32 i32))

  ;; the slot of a context: its length, then up to 252 bytes
  (func $slot (param $context i32) (result i32)
    (i32.add (i32.const 65536)
      (i32.shl (i32.and (local.get $context) (i32.const 1023)) (i32.const 8))))

  (func (export "proxy_on_request_headers") (param $context i32) (param i32 i32) (result i32)
    (local $slot i32) (local $len i32)
    (local.set $slot (call $slot (local.get $context)))
    (i32.store (local.get $slot) (i32.const -1))
    (if (i32.eqz (call $get_header (i32.const 0) (i32.const 327680) (i32.const 12)
                   (global.get $value_ptr) (global.get $value_len)))
      (then
        (local.set $len (i32.load (global.get $value_len)))
        (if (i32.le_u (local.get $len) (i32.const 252))
          (then
            (memory.copy (i32.add (local.get $slot) (i32.const 4))
                         (i32.load (global.get $value_ptr)) (local.get $len))
            (i32.store (local.get $slot) (local.get $len))))))
    (i32.const 0))

  (func (export "proxy_on_response_headers") (param $context i32) (param i32 i32) (result i32)
    (local $slot i32) (local $len i32)
    (local.set $slot (call $slot (local.get $context)))
    (local.set $len (i32.load (local.get $slot)))
    (if (i32.eq (local.get $len) (i32.const -1))
      (then
        (drop (call $add_header (i32.const 2) (i32.const 327696) (i32.const 7)
                (i32.const 327712) (i32.const 4))))
      (else
        (drop (call $add_header (i32.const 2) (i32.const 327696) (i32.const 7)
                (i32.add (local.get $slot) (i32.const 4)) (local.get $len)))))
    (i32.const 0)))
