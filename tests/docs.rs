//! The README's lists stay true to the code.

use ngx_proxy_wasm::runtime::hostcalls::UNIMPLEMENTED;

#[test]
fn readme_lists_exactly_the_unimplemented_host_functions() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let paragraph = readme
        .split("Not supported:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("a \"Not supported:\" paragraph");
    let listed: Vec<&str> = paragraph
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| word.starts_with("proxy_"))
        .collect();
    let mut expected = UNIMPLEMENTED.to_vec();
    let mut listed_sorted = listed.clone();
    expected.sort_unstable();
    listed_sorted.sort_unstable();
    assert_eq!(listed_sorted, expected);
}
