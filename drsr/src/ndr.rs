//! NDR 2.0 marshalling ([C706] 14) with bounded sizes.
