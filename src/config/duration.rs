//! STUB: Envoy duration strings ("0.25s") and {seconds,nanos} objects.
