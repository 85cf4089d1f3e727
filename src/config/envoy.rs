//! STUB: walks the Envoy v3 YAML tree into the model.
