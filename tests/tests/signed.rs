//! Signed patches (feature `sign`): every single-byte change to a signed
//! patch is refused before anything is reported applied, even when the
//! attacker also makes the header and body CRCs right again; another key's
//! signature, an unsigned patch and an older security counter are refused.

use flashpatch::crc32::crc32;
use flashpatch::format::CONTAINER_HEADER_LEN;
use flashpatch::{ApplyError as Error, Outcome, Verdict};
use flashpatch_tests::{apply_guarded_with, firmware_pair};
use host_genpat::container;
use host_genpat::keys::SecretKey;
use host_genpat::{GenOptions, Metadata};

const COUNTER: u32 = 5;

/// A one-entry patch signed by `key`, with security counter 5.
fn signed_patch(key: &SecretKey) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (old, new) = firmware_pair(21, 1500);
    let opts = GenOptions {
        meta: Metadata {
            security_counter: Some(COUNTER),
            ..Default::default()
        },
        ..Default::default()
    };
    let (_, entry) =
        host_genpat::generate(&old, &new, &opts, &mut host_genpat::NoProgress).unwrap();
    let entry = container::sign_entry(&entry, key).unwrap();
    let patch = container::assemble([entry.as_slice()]).unwrap();
    (old, new, patch)
}

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed([seed; 32])
}

/// Makes the header's body CRC and the header CRC right again for the
/// (possibly changed) bytes of the single entry of `patch`, as an attacker
/// who knows the format would. Returns `false` if the length field no
/// longer frames an entry.
fn fix_crcs(patch: &mut [u8]) -> bool {
    let at = CONTAINER_HEADER_LEN;
    let h = u16::from_le_bytes([patch[at], patch[at + 1]]) as usize;
    let (hdr, body) = (at + 2, at + 2 + h);
    if !(80..=256).contains(&h) || body > patch.len() {
        return false;
    }
    let body_crc = crc32(&patch[body..]);
    patch[hdr + 72..hdr + 76].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32(&patch[at..body - 4]);
    patch[body - 4..body].copy_from_slice(&header_crc.to_le_bytes());
    true
}

#[test]
fn every_byte_change_is_refused_even_with_fixed_crcs() {
    let k = key(1);
    let trust = Some((k.public(), COUNTER));
    let (old, new, patch) = signed_patch(&k);
    let slot = old.len().max(new.len());
    let g = apply_guarded_with(&patch, &old, slot, 64, new.len(), trust);
    assert_eq!(g.result, Ok(Outcome::Applied));
    assert_eq!(g.target, new);

    let (mut plain, mut fixed) = (0usize, 0usize);
    for i in 0..patch.len() {
        for delta in 1..=255u8 {
            let mut bad = patch.clone();
            bad[i] ^= delta;
            let g = apply_guarded_with(&bad, &old, slot, 64, new.len(), trust);
            assert!(g.result.is_err(), "byte {i} ^ {delta:#04x} accepted");
            plain += 1;
            // Only a change of the CRC fields themselves can be undone by
            // fixing the CRCs; everything else must fail on the signature.
            if fix_crcs(&mut bad) && bad != patch {
                let g = apply_guarded_with(&bad, &old, slot, 64, new.len(), trust);
                let e = g.result.expect_err("a re-CRCed change was accepted");
                assert_eq!(
                    e.verdict(),
                    Verdict::Corrupt,
                    "byte {i} ^ {delta:#04x}: {e:?}"
                );
                fixed += 1;
            }
        }
    }
    println!(
        "signed patch of {} bytes: {plain} single-byte changes refused, \
         {fixed} of them also with header and body CRCs made right again",
        patch.len()
    );
}

#[test]
fn other_key_unsigned_and_older_counter_are_refused() {
    let k = key(1);
    let (old, new, patch) = signed_patch(&k);
    let slot = old.len().max(new.len());
    let run = |p: &[u8], trust| apply_guarded_with(p, &old, slot, 97, new.len(), trust).result;

    // Signed by another key.
    let (_, _, other) = signed_patch(&key(2));
    assert_eq!(run(&other, Some((k.public(), 0))), Err(Error::BadSignature));
    // Not signed at all.
    let unsigned = host_genpat::diff(&old, &new, &Default::default()).unwrap();
    assert_eq!(run(&unsigned, Some((k.public(), 0))), Err(Error::Unsigned));
    // An older counter than the device's minimum.
    assert_eq!(
        run(&patch, Some((k.public(), COUNTER + 1))),
        Err(Error::Rollback {
            counter: COUNTER,
            min: COUNTER + 1
        })
    );
    // The same counter, and a device without a key, accept it.
    assert_eq!(
        run(&patch, Some((k.public(), COUNTER))),
        Ok(Outcome::Applied)
    );
    assert_eq!(run(&patch, None), Ok(Outcome::Applied));
    // Signing is deterministic and re-signing replaces the signature.
    assert_eq!(signed_patch(&k).2, patch);
    let entry = &container::parse(&patch).unwrap()[0];
    let again = container::sign_entry(&entry.bytes, &key(2)).unwrap();
    assert!(
        container::parse(&container::assemble([again.as_slice()]).unwrap()).unwrap()[0]
            .signed_by(&key(2).public())
    );
    assert!(entry.signed_by(&k.public()) && !entry.signed_by(&key(2).public()));
    println!(
        "refused: another key's signature, an unsigned patch, counter {COUNTER} below minimum {}",
        COUNTER + 1
    );
}
