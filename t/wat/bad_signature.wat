;; proxy_on_request_headers with ABI 0.1.0's two parameters in a module
;; that declares ABI 0.2.1.
(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 0))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32) (result i32) (i32.const 0)))
