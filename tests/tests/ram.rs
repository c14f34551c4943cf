//! The applier's RAM is its `size_of`: pinned here.

use host_genpat::apply::HostApplier;

#[test]
fn applier_ram_is_bounded() {
    let applier = core::mem::size_of::<HostApplier>();
    let model = core::mem::size_of::<flashpatch::codec::Model>();
    println!("applier RAM (size_of, as genpat apply instantiates it): {applier} bytes; codec model {model} bytes");
    assert!(applier <= 4096, "applier is {applier} bytes");
    assert!(model <= 3072, "model is {model} bytes");
}
