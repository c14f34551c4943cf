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

#[test]
fn slot_manager_and_update_ram_is_bounded() {
    use flashpatch_tests::device::{DevSlots, DevUpdate};
    const E: usize = 4096;
    let slots = core::mem::size_of::<DevSlots<'static, E>>();
    let update = core::mem::size_of::<DevUpdate<'static, 'static, E>>();
    println!(
        "slot manager (size_of Slots) {slots} bytes + update in progress (size_of Update, applier inside) {update} bytes = {} bytes",
        slots + update
    );
    assert!(slots + update <= 4096, "slots {slots} + update {update}");
}
