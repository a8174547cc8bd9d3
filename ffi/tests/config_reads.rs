//! The config reads a host needs without parsing the config's JSON: where it reads a forcing
//! value (`pgate_override_names`), whether the store sums every process's outcomes
//! (`pgate_fleet_judging`) and the gate's name (`pgate_gate_name`), and those a host reads from a
//! config document before it opens a gate (`pgate_store_location`, `pgate_document_gate_name`,
//! `pgate_document_fleet_judging`, `pgate_document_check_slo`).
#![allow(unsafe_code)]

mod common;

use common::{error_text, new_gate, refused_gate, text_of, text_sized_by_its_length};
use promotion_gates_ffi::*;
use std::ptr::{null, null_mut};

/// Calls `pgate_override_names` with two caller buffers; returns the status and both lengths
/// (`usize::MAX` where the library wrote none).
fn names_into(
    gate: *const pgate_gate,
    header: &mut [u8],
    cookie: &mut [u8],
) -> (pgate_status, usize, usize) {
    let (mut header_len, mut cookie_len) = (usize::MAX, usize::MAX);
    // SAFETY: live gate; each buffer holds the capacity passed; valid out-pointers.
    let status = unsafe {
        pgate_override_names(
            gate,
            header.as_mut_ptr().cast(),
            header.len(),
            &mut header_len,
            cookie.as_mut_ptr().cast(),
            cookie.len(),
            &mut cookie_len,
        )
    };
    (status, header_len, cookie_len)
}

/// The two names as `pgate_override_names` writes them into buffers of `PGATE_NAME_CAPACITY`.
fn override_names(gate: *const pgate_gate) -> (String, String) {
    let mut header = [0xAAu8; PGATE_NAME_CAPACITY];
    let mut cookie = [0xAAu8; PGATE_NAME_CAPACITY];
    let (status, header_len, cookie_len) = names_into(gate, &mut header, &mut cookie);
    assert_eq!(status, pgate_status::Ok);
    assert_eq!(
        (header[header_len], cookie[cookie_len]),
        (0, 0),
        "NUL-terminated"
    );
    let text = |buf: &[u8], len| String::from_utf8_lossy(&buf[..len]).into_owned();
    (text(&header, header_len), text(&cookie, cookie_len))
}

/// What `pgate_fleet_judging` answers, read into variables holding false and true first, so a
/// call that wrote nothing could not pass.
fn fleet_judging(gate: *const pgate_gate) -> bool {
    let answers = [false, true].map(|mut answer| {
        // SAFETY: live gate; a valid out-pointer.
        let status = unsafe { pgate_fleet_judging(gate, &mut answer) };
        assert_eq!(status, pgate_status::Ok);
        answer
    });
    assert_eq!(answers[0], answers[1], "the answer is written");
    answers[0]
}

#[test]
fn the_override_names_are_the_configs_and_follow_a_swap() {
    let gate = new_gate(r#"{"overrides": {"header": "X-Canary", "cookie": "pg_canary"}}"#);
    assert_eq!(
        override_names(gate),
        ("X-Canary".to_string(), "pg_canary".to_string())
    );

    // A rename by a config swap moves the change count and shows in the next read.
    let mut before = 0;
    let mut after = 0;
    let swapped = r#"{"overrides": {"cookie": "'quoted'-looking|name~"}}"#;
    // SAFETY: live gate; valid out-pointers; the document is a live slice; err may be NULL.
    unsafe {
        assert_eq!(pgate_change_count(gate, &mut before), pgate_status::Ok);
        assert_eq!(
            pgate_swap_config(gate, swapped.as_ptr(), swapped.len(), null_mut()),
            pgate_status::Ok
        );
        assert_eq!(pgate_change_count(gate, &mut after), pgate_status::Ok);
    }
    assert!(after > before);
    // No header any more: length 0; the cookie's punctuation comes back as it is.
    assert_eq!(
        override_names(gate),
        (String::new(), "'quoted'-looking|name~".to_string())
    );
    // SAFETY: live gate, freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
}

#[test]
fn a_gate_without_overrides_names_nothing_and_the_longest_name_fits_the_capacity() {
    let gate = new_gate("{}");
    assert_eq!(override_names(gate), (String::new(), String::new()));
    // SAFETY: live gate, freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);

    let longest = "h".repeat(PGATE_NAME_CAPACITY - 1);
    let gate = new_gate(&format!(
        r#"{{"overrides": {{"header": "{longest}", "cookie": "c"}}}}"#
    ));
    assert_eq!(override_names(gate), (longest, "c".to_string()));
    // SAFETY: live gate, freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
}

/// serde's derived reader took a struct's fields in order, an array: `{"overrides": [...]}`
/// made a gate forcing those names, `{"store": {"sqlite": [PATH]}}` one on a new file.
#[test]
fn a_struct_given_as_an_array_opens_no_gate_and_swaps_nothing() {
    let dir = std::env::temp_dir().join(format!("pg-ffi-positional-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a.db");
    let store = format!(
        r#"{{"store": {{"sqlite": [{:?}]}}}}"#,
        file.to_str().unwrap()
    );
    let overrides = r#"{"overrides": ["X-Canary", "c", ["a"], []]}"#;
    let refusal = "must be a JSON object with named fields, not an array at line 1 column";
    for (document, field) in [(overrides, "overrides"), (store.as_str(), "store.sqlite")] {
        let (status, message) = refused_gate(document);
        assert_eq!(status, pgate_status::InvalidJson, "{message}");
        assert!(
            message.starts_with(&format!("invalid JSON config: {field}: {refusal}")),
            "{message}"
        );
    }
    assert!(!file.exists(), "no store was opened");
    let (status, _, written, message) = store_location(&store, 1024);
    assert_eq!(
        (status, written),
        (pgate_status::InvalidJson, None),
        "{message}"
    );
    assert!(
        message.contains(&format!("store.sqlite: {refusal}")),
        "{message}"
    );

    // A swap to it is refused, and the gate keeps its names.
    let gate = new_gate(r#"{"overrides": {"header": "X-Stable"}}"#);
    let mut err = null_mut();
    // SAFETY: live gate; a live document; err is a valid out-pointer.
    let (status, message) = unsafe {
        let status = pgate_swap_config(gate, overrides.as_ptr(), overrides.len(), &mut err);
        (status, error_text(err))
    };
    assert_eq!(status, pgate_status::InvalidJson, "{message}");
    assert!(
        message.contains(&format!("overrides: {refusal}")),
        "{message}"
    );
    assert_eq!(
        override_names(gate),
        ("X-Stable".to_string(), String::new())
    );
    // SAFETY: live gate, freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_too_small_buffer_gets_both_lengths_and_no_name() {
    let gate = new_gate(r#"{"overrides": {"header": "X-Canary", "cookie": "pg_canary"}}"#);
    let mut header = [0xAAu8; 8]; // "X-Canary" is 8 bytes: no room for the NUL
    let mut cookie = [0xAAu8; PGATE_NAME_CAPACITY];
    let (status, header_len, cookie_len) = names_into(gate, &mut header, &mut cookie);
    assert_eq!(status, pgate_status::BufferTooSmall);
    assert_eq!((header_len, cookie_len), (8, 9));
    assert!(
        header.iter().chain(&cookie).all(|&b| b == 0xAA),
        "no name written"
    );

    // NULL buffers ask for the lengths, as with every caller-owned buffer.
    let (mut header_len, mut cookie_len) = (0, 0);
    // SAFETY: live gate; NULL buffers with capacity 0; valid out-pointers.
    let status = unsafe {
        pgate_override_names(
            gate,
            null_mut(),
            0,
            &mut header_len,
            null_mut(),
            0,
            &mut cookie_len,
        )
    };
    assert_eq!(status, pgate_status::BufferTooSmall);
    assert_eq!((header_len, cookie_len), (8, 9));
    // SAFETY: live gate, freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
}

#[test]
fn bad_arguments_are_statuses_and_write_nothing() {
    let gate = new_gate(r#"{"overrides": {"header": "X-Canary"}}"#);
    let mut buf = [0xAAu8; PGATE_NAME_CAPACITY];
    let mut other = [0xAAu8; PGATE_NAME_CAPACITY];
    let mut len = 7usize;
    let mut other_len = 7usize;
    let buf_ptr = buf.as_mut_ptr().cast();
    let other_ptr = other.as_mut_ptr().cast();
    let cap = PGATE_NAME_CAPACITY;
    // A gate address that was never made by pgate_gate_new (only compared, never read).
    let foreign = std::ptr::dangling::<pgate_gate>();
    let len_ptr: *mut usize = &mut len;
    let other_len_ptr: *mut usize = &mut other_len;
    // (gate, header capacity, header length out, cookie capacity, cookie length out, status)
    let cases = [
        (
            null(),
            cap,
            len_ptr,
            cap,
            other_len_ptr,
            pgate_status::NullPointer,
        ),
        (
            gate.cast_const(),
            cap,
            null_mut(),
            cap,
            other_len_ptr,
            pgate_status::NullPointer,
        ),
        (
            gate.cast_const(),
            cap,
            len_ptr,
            cap,
            null_mut(),
            pgate_status::NullPointer,
        ),
        (
            gate.cast_const(),
            usize::MAX,
            len_ptr,
            cap,
            other_len_ptr,
            pgate_status::InvalidArgument,
        ),
        (
            gate.cast_const(),
            cap,
            len_ptr,
            usize::MAX,
            other_len_ptr,
            pgate_status::InvalidArgument,
        ),
        (
            foreign,
            cap,
            len_ptr,
            cap,
            other_len_ptr,
            pgate_status::InvalidHandle,
        ),
    ];
    for (i, (g, header_cap, header_len, cookie_cap, cookie_len, expected)) in
        cases.into_iter().enumerate()
    {
        // SAFETY: every pointer is NULL, a live gate, a foreign address the cold check
        // refuses before use, a buffer of at least the capacity passed (the over-long
        // capacities are refused before use), or a live length.
        let status = unsafe {
            pgate_override_names(
                g, buf_ptr, header_cap, header_len, other_ptr, cookie_cap, cookie_len,
            )
        };
        assert_eq!(status, expected, "case {i}");
    }
    assert_eq!((len, other_len), (7, 7), "no length written");
    assert!(
        buf.iter().chain(&other).all(|&b| b == 0xAA),
        "no name written"
    );

    let mut sums = true;
    // SAFETY: NULL, foreign or live gates (the foreign one is refused before use); a valid
    // out-pointer or NULL.
    unsafe {
        assert_eq!(
            pgate_fleet_judging(null(), &mut sums),
            pgate_status::NullPointer
        );
        assert_eq!(
            pgate_fleet_judging(gate, null_mut()),
            pgate_status::NullPointer
        );
        assert_eq!(
            pgate_fleet_judging(foreign, &mut sums),
            pgate_status::InvalidHandle
        );
    }
    assert!(sums, "nothing written");
    // SAFETY: live gate, freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
}

#[test]
#[cfg_attr(miri, ignore = "SQLite is C code, which Miri cannot run")]
fn fleet_judging_is_the_stores_and_off_without_a_store() {
    let gate = new_gate("{}");
    assert!(!fleet_judging(gate), "no store: nothing summed");
    // SAFETY: live gate, freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);

    let dir = std::env::temp_dir().join(format!("pg-ffi-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, (store, expected)) in [
        (r#""fleet_judging": true"#, true),
        (r#""fleet_judging": false"#, false),
        // Without the key: on, the default (the config JSON the gate writes holds it).
        (r#""busy_timeout_ms": 0"#, true),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.join(format!("g{i}.db"));
        let document = format!(
            r#"{{"gate": "checkout", "store": {{"sqlite": {{"path": {:?}, {store}}}}}}}"#,
            path.to_str().unwrap()
        );
        let gate = new_gate(&document);
        assert_eq!(fleet_judging(gate), expected, "{document}");
        // SAFETY: live gate, freed once.
        assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What `pgate_gate_name` answers for a live gate, with a buffer of `PGATE_NAME_CAPACITY`.
fn gate_name(gate: *const pgate_gate) -> String {
    let mut name = [0u8; PGATE_NAME_CAPACITY];
    let mut len = 0;
    // SAFETY: live gate; a buffer of its capacity; a valid out-pointer.
    let status = unsafe { pgate_gate_name(gate, name.as_mut_ptr().cast(), name.len(), &mut len) };
    assert_eq!(status, pgate_status::Ok);
    String::from_utf8_lossy(&name[..len]).into_owned()
}

#[test]
fn the_gate_name_is_the_configs_and_a_freed_handle_is_refused() {
    let gate = new_gate(r#"{"gate": "checkout"}"#);
    let mut name = [0xAAu8; PGATE_NAME_CAPACITY];
    let mut len = 0usize;
    // SAFETY: live gate; a buffer of its capacity; a valid out-pointer.
    let status = unsafe { pgate_gate_name(gate, name.as_mut_ptr().cast(), name.len(), &mut len) };
    assert_eq!(
        (status, &name[..=len]),
        (pgate_status::Ok, &b"checkout\0"[..])
    );
    let mut small = [0xAAu8; 4];
    len = 0;
    // SAFETY: as above, with a buffer too small for the name.
    let status = unsafe { pgate_gate_name(gate, small.as_mut_ptr().cast(), small.len(), &mut len) };
    assert_eq!(
        (status, len, small),
        (pgate_status::BufferTooSmall, 8, [0xAA; 4])
    );
    // SAFETY: a NULL length out-pointer is refused before anything is written.
    let status = unsafe { pgate_gate_name(gate, name.as_mut_ptr().cast(), name.len(), null_mut()) };
    assert_eq!(status, pgate_status::NullPointer);
    // SAFETY: the gate was made by pgate_gate_new and is freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
    // SAFETY: a freed handle is only compared against the live gates, never read.
    let status = unsafe { pgate_gate_name(gate, name.as_mut_ptr().cast(), name.len(), &mut len) };
    assert_eq!(status, pgate_status::InvalidHandle);
}

/// A call that reads a text from a config document alone into a caller buffer:
/// `pgate_store_location` and `pgate_document_gate_name`.
type DocumentRead = unsafe extern "C" fn(
    *const u8,
    usize,
    *mut std::ffi::c_char,
    usize,
    *mut usize,
    *mut *mut pgate_error,
) -> pgate_status;

/// What `read` answers for `document` with a buffer of `cap` bytes: its status, the length
/// written (`usize::MAX` when none was), the text written (`None` when nothing was), and the
/// error object's message (empty without one).
fn read_document(
    read: DocumentRead,
    document: &str,
    cap: usize,
) -> (pgate_status, usize, Option<String>, String) {
    let mut text = vec![0xAAu8; cap];
    let mut len = usize::MAX;
    let mut err = null_mut();
    // SAFETY: the document is a live slice; the buffer holds `cap` bytes; valid out-pointers.
    let status = unsafe {
        read(
            document.as_ptr(),
            document.len(),
            text.as_mut_ptr().cast(),
            cap,
            &mut len,
            &mut err,
        )
    };
    let written = (status == pgate_status::Ok).then(|| {
        assert_eq!(text[len], 0, "NUL-terminated");
        String::from_utf8_lossy(&text[..len]).into_owned()
    });
    if status != pgate_status::Ok {
        assert!(text.iter().all(|&b| b == 0xAA), "nothing written");
    }
    // SAFETY: err is NULL or an error object made by this call, read then freed once.
    let message = unsafe {
        let message = std::ffi::CStr::from_ptr(pgate_error_message(err))
            .to_string_lossy()
            .into_owned();
        pgate_error_free(err);
        message
    };
    (status, len, written, message)
}

/// What `pgate_store_location` answers for `document` (see [`read_document`]).
fn store_location(document: &str, cap: usize) -> (pgate_status, usize, Option<String>, String) {
    read_document(pgate_store_location, document, cap)
}

/// Checks the arguments `read` refuses for a valid `document`, each named with its value in
/// the error object: a NULL `len_out`, a `cap` past `PTRDIFF_MAX` (nothing written) and a NULL
/// document with a length; and that a NULL buffer, a size probe, writes only the length
/// (BUFFER_TOO_SMALL), no error object.
fn refuses_bad_arguments(read: DocumentRead, document: &str) {
    let needed = read_document(read, document, 1024).1;
    // Calls `read` with `document` (NULL with `doc_len` when `document` is None), a NULL
    // buffer of `cap` and `len_out` (a live length, or NULL): the status, the length (7 when
    // nothing was written) and the error object's message.
    let call = |document: Option<&str>, doc_len: usize, cap: usize, len_out: bool| {
        let mut len = 7usize;
        let len_ptr: *mut usize = if len_out { &mut len } else { null_mut() };
        let mut err = null_mut();
        let doc = document.map_or(null(), str::as_ptr);
        // SAFETY: a live document or NULL (refused with a length), a NULL buffer (written only
        // with a capacity that fits, never here), a live length or NULL; err a valid out-pointer.
        let status = unsafe { read(doc, doc_len, null_mut(), cap, len_ptr, &mut err) };
        if status == pgate_status::BufferTooSmall {
            assert!(err.is_null(), "a size probe writes no error object");
        }
        // SAFETY: the error object this call made, read and freed once.
        (status, len, unsafe { error_text(err) })
    };
    let n = document.len();
    assert_eq!(
        call(Some(document), n, 0, true),
        (pgate_status::BufferTooSmall, needed, String::new())
    );
    assert_eq!(
        call(Some(document), n, 0, false),
        (
            pgate_status::NullPointer,
            7,
            "invalid len_out = NULL: the result is written there".to_string()
        )
    );
    let huge = isize::MAX as usize + 1;
    assert_eq!(
        call(Some(document), n, huge, true),
        (
            pgate_status::InvalidArgument,
            7,
            format!("invalid cap = {huge}: above PTRDIFF_MAX ({})", isize::MAX)
        )
    );
    assert_eq!(
        call(None, 5, 0, true),
        (
            pgate_status::NullPointer,
            7,
            "invalid config_json = NULL with config_len = 5: a NULL pointer needs length 0"
                .to_string()
        )
    );
}

#[test]
fn the_store_location_is_read_from_the_document_without_opening_it() {
    // A relative path is written as the document gives it, and no file is created: the
    // directory does not even exist.
    let relative = r#"{"gate": "g", "store": {"sqlite": {"path": "no-such-dir/rel.db"}}}"#;
    assert_eq!(
        store_location(relative, 64),
        (
            pgate_status::Ok,
            25,
            Some("sqlite:no-such-dir/rel.db".to_string()),
            String::new()
        )
    );
    assert!(!std::path::Path::new("no-such-dir").exists());
    let etcd = r#"{"store": {"etcd": {"endpoints": ["http://127.0.0.1:2379"], "prefix": "/pg/checkout"}}}"#;
    assert_eq!(
        store_location(etcd, 64).2.as_deref(),
        Some("etcd:/pg/checkout")
    );
    // No store, and the default document (length 0): the empty string.
    assert_eq!(store_location(r#"{"gate": "g"}"#, 1).2.as_deref(), Some(""));
    let mut len = usize::MAX;
    let mut location = [0xAAu8; 4];
    // SAFETY: a NULL document of length 0 is the default; a live buffer; valid out-pointers.
    let status = unsafe {
        pgate_store_location(
            null(),
            0,
            location.as_mut_ptr().cast(),
            location.len(),
            &mut len,
            null_mut(),
        )
    };
    assert_eq!((status, len, location[0]), (pgate_status::Ok, 0, 0));
}

#[test]
fn a_bad_document_or_a_small_buffer_writes_no_location() {
    // Too small: the length, no text and no error object (a size probe leaves nothing to
    // free); NULL asks for the length the same way.
    let document = r#"{"store": {"sqlite": {"path": "/var/lib/pg/g.db"}}}"#;
    assert_eq!(
        store_location(document, 23),
        (pgate_status::BufferTooSmall, 23, None, String::new())
    );
    refuses_bad_arguments(pgate_store_location, document);

    // Validated as pgate_gate_new validates: the message names the field and the value.
    let (status, len, written, message) =
        store_location(r#"{"store": {"sqlite": {"path": ""}}}"#, 64);
    assert_eq!(
        (status, len, written),
        (pgate_status::InvalidConfig, usize::MAX, None)
    );
    assert!(message.contains("store.sqlite.path"), "{message}");
    let (status, _, _, message) = store_location(r#"{"store": "#, 64);
    assert_eq!(status, pgate_status::InvalidJson, "{message}");
}

/// What `pgate_document_gate_name` answers for `document` (see [`read_document`]).
fn document_gate_name(document: &str, cap: usize) -> (pgate_status, usize, Option<String>, String) {
    read_document(pgate_document_gate_name, document, cap)
}

/// What `pgate_document_fleet_judging` answers for `document`: its status, the answer (`None`
/// when nothing was written: it is read into variables holding false and true first) and the
/// error object's message.
fn document_fleet_judging(document: &str) -> (pgate_status, Option<bool>, String) {
    let mut messages = Vec::new();
    let answers = [false, true].map(|mut answer| {
        let mut err = null_mut();
        // SAFETY: the document is a live slice; valid out-pointers.
        let status = unsafe {
            pgate_document_fleet_judging(document.as_ptr(), document.len(), &mut answer, &mut err)
        };
        // SAFETY: err is NULL or the error object this call made, read and freed once.
        messages.push(unsafe { error_text(err) });
        (status, answer)
    });
    let [(status, first), (again, second)] = answers;
    assert_eq!(status, again);
    let answer = match status {
        pgate_status::Ok => {
            assert_eq!(first, second, "the answer is written");
            Some(first)
        }
        _ => {
            assert_eq!((first, second), (false, true), "nothing written on failure");
            None
        }
    };
    (status, answer, messages.swap_remove(0))
}

#[test]
fn the_document_gate_name_is_its_gate_field_or_the_default() {
    assert_eq!(
        document_gate_name(r#"{"gate": "checkout"}"#, PGATE_NAME_CAPACITY),
        (
            pgate_status::Ok,
            8,
            Some("checkout".to_string()),
            String::new()
        )
    );
    // Without a `gate`, and the default document (length 0, NULL): the library's default.
    assert_eq!(
        document_gate_name("{}", PGATE_NAME_CAPACITY).2.as_deref(),
        Some("default")
    );
    let mut name = [0xAAu8; PGATE_NAME_CAPACITY];
    let mut len = usize::MAX;
    // SAFETY: a NULL document of length 0 is the default; a live buffer; valid out-pointers.
    let status = unsafe {
        pgate_document_gate_name(
            null(),
            0,
            name.as_mut_ptr().cast(),
            name.len(),
            &mut len,
            null_mut(),
        )
    };
    assert_eq!(
        (status, &name[..=len]),
        (pgate_status::Ok, &b"default\0"[..])
    );
    // The longest name the library accepts fits PGATE_NAME_CAPACITY with its NUL.
    let longest = "g".repeat(PGATE_NAME_CAPACITY - 1);
    assert_eq!(
        document_gate_name(&format!(r#"{{"gate": "{longest}"}}"#), PGATE_NAME_CAPACITY).2,
        Some(longest)
    );
    // Read from the document alone: a store in a directory that does not exist is not opened.
    let stored = r#"{"gate": "g", "store": {"sqlite": {"path": "no-such-dir/name.db"}}}"#;
    assert_eq!(document_gate_name(stored, 2).2.as_deref(), Some("g"));
    assert!(!std::path::Path::new("no-such-dir").exists());
}

#[test]
fn a_bad_document_or_argument_writes_no_gate_name() {
    // Too small: the length, no text and no error object; NULL asks for the length the same
    // way.
    let document = r#"{"gate": "checkout"}"#;
    assert_eq!(
        document_gate_name(document, 8),
        (pgate_status::BufferTooSmall, 8, None, String::new())
    );
    refuses_bad_arguments(pgate_document_gate_name, document);

    // Validated as pgate_gate_new validates: the message names the field and the value.
    let (status, len, written, message) =
        document_gate_name(r#"{"gate": ""}"#, PGATE_NAME_CAPACITY);
    assert_eq!(
        (status, len, written),
        (pgate_status::InvalidConfig, usize::MAX, None)
    );
    assert!(message.contains(r#"gate = """#), "{message}");
    let (status, _, _, message) = document_gate_name(
        r#"{"gate": "g", "slo_threshold": 2.0}"#,
        PGATE_NAME_CAPACITY,
    );
    assert_eq!(status, pgate_status::InvalidConfig, "{message}");
    assert!(message.contains("slo_threshold = 2"), "{message}");
    let (status, _, _, message) = document_gate_name(r#"{"gate": "#, PGATE_NAME_CAPACITY);
    assert_eq!(status, pgate_status::InvalidJson, "{message}");
    assert!(message.starts_with("invalid JSON config"), "{message}");
}

#[test]
fn the_document_fleet_judging_is_its_stores_and_off_without_a_store() {
    assert_eq!(
        document_fleet_judging("{}"),
        (pgate_status::Ok, Some(false), String::new())
    );
    for (store, expected) in [
        (r#""fleet_judging": true"#, true),
        (r#""fleet_judging": false"#, false),
        (r#""busy_timeout_ms": 0"#, true), // without the key: on, the default
    ] {
        // Read from the document alone: the store's directory does not exist.
        let document = format!(
            r#"{{"gate": "g", "store": {{"sqlite": {{"path": "no-such-dir/f.db", {store}}}}}}}"#
        );
        assert_eq!(
            document_fleet_judging(&document),
            (pgate_status::Ok, Some(expected), String::new()),
            "{document}"
        );
    }
    let etcd = r#"{"store": {"etcd": {"endpoints": ["http://127.0.0.1:2379"], "prefix": "/pg"}}}"#;
    assert_eq!(document_fleet_judging(etcd).1, Some(true));
    assert!(!std::path::Path::new("no-such-dir").exists());

    let mut answer = true;
    // SAFETY: a NULL document of length 0 is the default; a valid out-pointer.
    let status = unsafe { pgate_document_fleet_judging(null(), 0, &mut answer, null_mut()) };
    assert_eq!((status, answer), (pgate_status::Ok, false));
}

#[test]
fn a_bad_document_or_argument_writes_no_fleet_judging() {
    let (status, answer, message) =
        document_fleet_judging(r#"{"store": {"sqlite": {"path": "", "fleet_judging": false}}}"#);
    assert_eq!((status, answer), (pgate_status::InvalidConfig, None));
    assert!(message.contains("store.sqlite.path"), "{message}");
    let (status, answer, message) =
        document_fleet_judging(r#"{"store": {"sqlite": {"path": "g.db", "fleet_judging": 1}}}"#);
    assert_eq!((status, answer), (pgate_status::InvalidJson, None));
    assert!(message.contains("fleet_judging"), "{message}");

    let document = "{}";
    let mut err = null_mut();
    // SAFETY: a NULL out-pointer is refused before anything is read or written.
    let status = unsafe {
        pgate_document_fleet_judging(document.as_ptr(), document.len(), null_mut(), &mut err)
    };
    assert_eq!(status, pgate_status::NullPointer);
    assert_eq!(
        // SAFETY: the error object this call made, read and freed once.
        unsafe { error_text(err) },
        "invalid fleet_judging = NULL: the result is written there"
    );
    let mut answer = true;
    // SAFETY: NULL with a length is refused before anything is read.
    let status = unsafe { pgate_document_fleet_judging(null(), 5, &mut answer, &mut err) };
    assert_eq!((status, answer), (pgate_status::NullPointer, true));
    assert_eq!(
        // SAFETY: the error object this call made, read and freed once.
        unsafe { error_text(err) },
        "invalid config_json = NULL with config_len = 5: a NULL pointer needs length 0"
    );
}

#[test]
#[cfg_attr(miri, ignore = "SQLite is C code, which Miri cannot run")]
fn the_document_reads_answer_as_the_gate_opened_from_the_document() {
    let dir = std::env::temp_dir().join(format!("pg-ffi-document-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let documents = [
        "{}".to_string(),
        r#"{"gate": "checkout"}"#.to_string(),
        format!(
            r#"{{"gate": "search", "store": {{"sqlite": {{"path": {:?}}}}}}}"#,
            path("on.db")
        ),
        format!(
            r#"{{"gate": "cart", "store": {{"sqlite": {{"path": {:?}, "fleet_judging": false}}}}}}"#,
            path("off.db")
        ),
    ];
    for document in &documents {
        let name = document_gate_name(document, PGATE_NAME_CAPACITY).2;
        let sums = document_fleet_judging(document).1;
        // Nothing was created by the reads.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "{document}");
        let gate = new_gate(document);
        assert_eq!(name, Some(gate_name(gate)), "{document}");
        assert_eq!(sums, Some(fleet_judging(gate)), "{document}");
        // SAFETY: live gate, freed once.
        assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
        for entry in std::fs::read_dir(&dir).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What `pgate_document_check_slo` answers for a config and an SLO document: its status and
/// the error object's message.
fn check_slo(config: &str, slo: &str) -> (pgate_status, String) {
    let mut err = null_mut();
    // SAFETY: the documents are live slices; a valid out-pointer.
    let status = unsafe {
        pgate_document_check_slo(
            config.as_ptr(),
            config.len(),
            slo.as_ptr(),
            slo.len(),
            &mut err,
        )
    };
    // SAFETY: err is NULL or the error object this call made, read and freed once.
    (status, unsafe { error_text(err) })
}

#[test]
fn the_slo_is_checked_against_the_config_documents_window_opening_nothing() {
    let dir = std::env::temp_dir().join(format!("pgate-check-slo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("g.db");
    let hour = format!(
        r#"{{"rollback_window_seconds": 3600, "store": {{"sqlite": {{"path": {path:?}}}}}}}"#
    );
    // A minute's interval fits an hour's window (not the default config's 300 s one).
    assert_eq!(
        check_slo(&hour, r#"{"evaluation_interval_ms": 60000}"#),
        (pgate_status::Ok, String::new())
    );
    // The default SLO (empty document, 1 s interval) does not fit a 5 s window.
    let (status, message) = check_slo(r#"{"rollback_window_seconds": 5}"#, "");
    assert_eq!(status, pgate_status::InvalidConfig);
    assert!(
        message.contains("invalid evaluation_interval_ms = 1000")
            && message.contains("rollback_window_seconds = 5"),
        "{message}"
    );
    // The SLO's own fields and the config's are checked too.
    assert_eq!(
        check_slo("", r#"{"min_samples": 1}"#).0,
        pgate_status::InvalidConfig
    );
    assert_eq!(
        check_slo(r#"{"rollback_window_seconds": 0}"#, "").0,
        pgate_status::InvalidConfig
    );
    assert!(!path.exists(), "the store was not opened");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The config and SLO documents as a gate reads them back (`pgate_config_json`,
/// `pgate_slo_json`).
fn documents_of(gate: *const pgate_gate) -> (String, String) {
    // SAFETY: live gate; text_of passes buffers of the capacity it names.
    let config = text_of(&|buf, cap, len| unsafe { pgate_config_json(gate, buf, cap, len) });
    // SAFETY: as above.
    let slo = text_of(&|buf, cap, len| unsafe { pgate_slo_json(gate, buf, cap, len) });
    (config, slo)
}

#[test]
#[cfg_attr(miri, ignore = "8 MiB documents: minutes under Miri")]
fn a_document_over_the_limit_is_refused_for_its_size_before_its_utf8_is_read() {
    // Not UTF-8 either: the size is what is wrong with it, and it is not read through.
    let long = vec![0xFFu8; promotion_gates::MAX_DOCUMENT_BYTES + 1];
    let refused = |status: pgate_status, err: *mut pgate_error| {
        assert_eq!(status, pgate_status::InvalidConfig);
        // SAFETY: a refusal wrote an error object.
        let text = unsafe { error_text(err) };
        assert!(
            text.contains("invalid document") && text.contains("8388609 bytes"),
            "{text}"
        );
        assert!(text.contains("8388608") && text.len() < 200, "{text}");
    };
    let (p, n) = (long.as_ptr(), long.len());
    let gate = new_gate(r#"{"gate": "g", "environment": "staging"}"#);
    let before = documents_of(gate);
    let (mut out, mut len, mut judging) = (null_mut(), 0, false);
    let mut buf = [0u8; 64];
    // SAFETY: live buffers of the lengths passed, valid out-pointers; the gate is freed below.
    unsafe {
        let mut err = null_mut();
        refused(pgate_gate_new(p, n, null(), 0, &mut out, &mut err), err);
        refused(pgate_gate_new(null(), 0, p, n, &mut out, &mut err), err);
        assert!(out.is_null());
        refused(pgate_swap_config(gate, p, n, &mut err), err);
        refused(pgate_swap_config_from(gate, 0, p, n, &mut err), err);
        refused(pgate_swap_slo(gate, p, n, &mut err), err);
        assert_eq!(
            documents_of(gate),
            before,
            "a refused swap changed the gate"
        );
        let cap = buf.len();
        let b = buf.as_mut_ptr().cast();
        refused(pgate_store_location(p, n, b, cap, &mut len, &mut err), err);
        refused(
            pgate_document_gate_name(p, n, b, cap, &mut len, &mut err),
            err,
        );
        refused(
            pgate_document_fleet_judging(p, n, &mut judging, &mut err),
            err,
        );
        refused(pgate_document_check_slo(p, n, null(), 0, &mut err), err);
        refused(pgate_document_check_slo(null(), 0, p, n, &mut err), err);
        assert_eq!(len, 0, "nothing written");
        assert_eq!(pgate_gate_free(gate), pgate_status::Ok);
    }
}

#[test]
fn the_document_reads_leave_the_window_against_the_interval_to_the_slo() {
    // A 5 s window fits an SLO with an interval of 500 ms or less, not the default 1 s one:
    // the reads take no SLO, so they read the document, and opening the gate with the default
    // SLO (or pgate_document_check_slo) refuses the pair, naming the interval.
    let short = r#"{"gate": "quick", "rollback_window_seconds": 5}"#;
    assert_eq!(store_location(short, 64).2.as_deref(), Some(""));
    assert_eq!(
        document_gate_name(short, PGATE_NAME_CAPACITY).2.as_deref(),
        Some("quick")
    );
    assert_eq!(document_fleet_judging(short).1, Some(false));
    let (status, message) = refused_gate(short);
    assert_eq!(status, pgate_status::InvalidConfig);
    assert!(
        message.contains("invalid evaluation_interval_ms = 1000")
            && message.contains("rollback_window_seconds = 5"),
        "{message}"
    );
    assert_eq!(check_slo(short, "").0, pgate_status::InvalidConfig);
    // With an interval that fits, the same document opens a gate.
    let gate = common::new_gate_with_slo(short, Some(r#"{"evaluation_interval_ms": 500}"#));
    // SAFETY: live gate, freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
}

/// A number refused after it was read (through an `f64`, or as a `Duration`) is named as the
/// document writes it, by each call that reads a document and validates it later: gate
/// creation, a config swap, the SLO check. u64::MAX was named 18446744073709552000.
#[test]
fn a_refused_number_is_named_as_the_document_writes_it() {
    let u64_max = "18446744073709551615";
    let config = format!(r#"{{"slo_threshold": {u64_max}}}"#);
    let named = format!("invalid slo_threshold = {u64_max}: ");
    let (status, message) = refused_gate(&config);
    assert_eq!(status, pgate_status::InvalidConfig, "{message}");
    assert!(message.starts_with(&named), "{message}");
    // The SLO's interval for the config's window: the SLO document's number.
    let window = r#"{"rollback_window_seconds": 300}"#;
    let slo = r#"{"evaluation_interval_ms": 3.6e6}"#;
    let interval = "invalid evaluation_interval_ms = 3.6e6: ";
    let (mut gate, mut err) = (null_mut(), null_mut());
    // SAFETY: live slices; valid out-pointers.
    unsafe {
        let status = pgate_gate_new(
            window.as_ptr(),
            window.len(),
            slo.as_ptr(),
            slo.len(),
            &mut gate,
            &mut err,
        );
        assert_eq!(status, pgate_status::InvalidConfig);
        let message = error_text(err);
        assert!(message.starts_with(interval), "{message}");
        let status = pgate_document_check_slo(
            window.as_ptr(),
            window.len(),
            slo.as_ptr(),
            slo.len(),
            &mut err,
        );
        assert_eq!(status, pgate_status::InvalidConfig);
        let message = error_text(err);
        assert!(message.starts_with(interval), "{message}");
        // A swapped SLO whose interval the gate's window refuses: the swapped document's number.
        let gate = new_gate(window);
        let swapped = r#"{"evaluation_interval_ms": 3.1e4}"#;
        let status = pgate_swap_slo(gate, swapped.as_ptr(), swapped.len(), &mut err);
        assert_eq!(status, pgate_status::InvalidConfig);
        let message = error_text(err);
        let interval = "invalid evaluation_interval_ms = 3.1e4: ";
        assert!(message.starts_with(interval), "{message}");
        assert_eq!(pgate_gate_free(gate), pgate_status::Ok);
        let gate = new_gate("{}");
        let status = pgate_swap_config(gate, config.as_ptr(), config.len(), &mut err);
        assert_eq!(status, pgate_status::InvalidConfig);
        let message = error_text(err);
        assert!(message.starts_with(&named), "{message}");
        let mut count = 0;
        assert_eq!(pgate_change_count(gate, &mut count), pgate_status::Ok);
        let status = pgate_swap_config_from(gate, count, config.as_ptr(), config.len(), &mut err);
        assert_eq!(status, pgate_status::InvalidConfig);
        let message = error_text(err);
        assert!(message.starts_with(&named), "{message}");
        assert_eq!(pgate_gate_free(gate), pgate_status::Ok);
    }
}

/// Every text output's buffer needs the length written + 1 bytes: the length leaves out the
/// NUL. A host sizing its buffer by the length alone is refused with the same length each
/// time (`PGATE_STATUS_BUFFER_TOO_SMALL`'s docs, the header's conventions); one byte more gets
/// the text. The calls of each way to the copy: a gate's JSON (config, SLO, rollback history,
/// changes), its name, a document's store location and gate name (the telemetry calls:
/// ffi/tests/telemetry.rs).
#[test]
fn a_buffer_of_the_length_told_is_refused_as_the_nul_needs_one_byte_more() {
    let gate = new_gate(r#"{"environment": "staging", "gate": "checkout"}"#);
    let reason = "bad deploy";
    // SAFETY: live gate and reason slice; err may be NULL.
    let status = unsafe { pgate_rollback(gate, reason.as_ptr(), reason.len(), null_mut()) };
    assert_eq!(status, pgate_status::Ok);
    // SAFETY: live gate; the helper passes buffers of the capacity it names.
    let config = text_sized_by_its_length(&|b, c, l| unsafe { pgate_config_json(gate, b, c, l) });
    assert!(config.contains(r#""gate":"checkout""#), "{config}");
    // SAFETY: as above.
    let slo = text_sized_by_its_length(&|b, c, l| unsafe { pgate_slo_json(gate, b, c, l) });
    assert!(slo.starts_with('{'), "{slo}");
    // SAFETY: as above.
    let history =
        text_sized_by_its_length(&|b, c, l| unsafe { pgate_rollback_history_json(gate, b, c, l) });
    assert!(history.contains(reason), "{history}");
    // SAFETY: as above.
    let changes =
        text_sized_by_its_length(&|b, c, l| unsafe { pgate_changes_json(gate, 0, b, c, l) });
    assert!(changes.contains(r#""kind":"rollback""#), "{changes}");
    // SAFETY: as above.
    let name = text_sized_by_its_length(&|b, c, l| unsafe { pgate_gate_name(gate, b, c, l) });
    assert_eq!(name, "checkout");
    let document = r#"{"gate": "api", "store": {"sqlite": {"path": "/var/lib/pg/g.db"}}}"#;
    let (doc, doc_len) = (document.as_ptr(), document.len());
    // SAFETY: the document's slice; buffers as above; err may be NULL.
    let location = text_sized_by_its_length(&|b, c, l| unsafe {
        pgate_store_location(doc, doc_len, b, c, l, null_mut())
    });
    assert_eq!(location, "sqlite:/var/lib/pg/g.db");
    // SAFETY: as above.
    let declared = text_sized_by_its_length(&|b, c, l| unsafe {
        pgate_document_gate_name(doc, doc_len, b, c, l, null_mut())
    });
    assert_eq!(declared, "api");
    // SAFETY: live gate, freed once.
    assert_eq!(unsafe { pgate_gate_free(gate) }, pgate_status::Ok);
}
