;; relay: the smallest useful ABI v1 module, written by hand in WAT.
;; Every message it receives is published again under uplink/telemetry/relay,
;; so it reaches the cloud through the durable MQTT outbox.
(module
  (import "edge" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (import "edge" "log" (func $log (param i32 i32 i32)))

  ;; One page: bytes 0..63 hold constants, the input buffer starts at 1024.
  (memory (export "memory") 2)
  (data (i32.const 0) "uplink/telemetry/relay")  ;; 22 bytes
  (data (i32.const 32) "relay ready")            ;; 11 bytes

  ;; The host writes topic and payload here; inputs beyond the memory fail to grow.
  (func (export "edge_alloc") (param $size i32) (result i32)
    (local $need i32)
    (local.set $need
      (i32.sub
        (i32.shr_u (i32.add (i32.add (local.get $size) (i32.const 1024)) (i32.const 65535)) (i32.const 16))
        (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.lt_s (memory.grow (local.get $need)) (i32.const 0)) (then (return (i32.const 0))))))
    (i32.const 1024))

  (func (export "edge_init") (result i32)
    (call $log (i32.const 1) (i32.const 32) (i32.const 11))
    (i32.const 0))

  (func (export "edge_on_message") (param $tp i32) (param $tl i32) (param $pp i32) (param $pl i32) (result i32)
    (call $publish (i32.const 0) (i32.const 22) (local.get $pp) (local.get $pl)))
)
