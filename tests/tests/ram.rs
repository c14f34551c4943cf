//! The applier's RAM is its `size_of`: pinned here.

use host_genpat::apply::{HostApplier, HostApplierState};

#[test]
fn applier_ram_is_bounded() {
    let handle = core::mem::size_of::<HostApplier>();
    let state = core::mem::size_of::<HostApplierState>();
    let applier = handle + state;
    let model = core::mem::size_of::<flashpatch::codec::Model>();
    println!(
        "applier RAM (size_of, as genpat apply instantiates it): {applier} bytes \
         (applier {handle} + its state {state}); codec model {model} bytes"
    );
    assert!(applier <= 4096, "applier is {applier} bytes");
    #[cfg(target_pointer_width = "64")]
    assert_eq!((applier, model), flashpatch_tests::pinned::APPLIER_RAM);
    assert!(model <= 3072, "model is {model} bytes");
}

#[test]
fn slot_manager_and_update_ram_is_bounded() {
    use flashpatch_tests::device::{DevSlots, DevUpdate};
    const E: usize = 4096;
    let slots = core::mem::size_of::<DevSlots<'static, E>>();
    let update = core::mem::size_of::<DevUpdate<'static, 'static, E>>();
    let state = core::mem::size_of::<flashpatch::ApplierState>();
    println!(
        "slot manager (size_of Slots) {slots} bytes + update in progress (size_of Update) {update} bytes \
         + the applier's state (size_of ApplierState) {state} bytes = {} bytes",
        slots + update + state
    );
    #[cfg(target_pointer_width = "64")]
    assert_eq!((slots, update, state), flashpatch_tests::pinned::SLOTS_RAM);
    assert!(
        slots + update + state <= 4096,
        "slots {slots} + update {update} + state {state}"
    );
}

#[test]
fn in_place_manager_ram_is_bounded() {
    use flashpatch::mock::MockFlash;
    use flashpatch::slots::InPlace;
    type Part<'a> = flashpatch::Partition<'a, MockFlash>;
    let manager =
        core::mem::size_of::<InPlace<'static, Part<'static>, Part<'static>, Part<'static>>>();
    let state = core::mem::size_of::<flashpatch::ApplierState>();
    println!(
        "in-place manager (size_of InPlace) {manager} bytes + the applier's state (size_of ApplierState) \
         {state} bytes = {} bytes",
        manager + state
    );
    assert!(
        manager + state <= 4096,
        "in place {manager} + state {state}"
    );
}
