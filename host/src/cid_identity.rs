//! When two CIDs name the same content: the one rule the queue (one pin per content), the
//! journal (one migration per content) and the node client (does `pin ls` show *this* pin?)
//! share.
//!
//! A CID's identity is its content: codec and multihash. CIDv0 (`Qm…`) and CIDv1 (`bafy…`) of
//! the same dag-pb content, or a CIDv1 written in another multibase, are the same content.

/// The content's key: its CIDv1 text (base32), or the trimmed text when it is not a CID (so a
/// malformed journal line still groups with itself).
pub fn key(cid: &str) -> String {
    let cid = cid.trim();
    match cid::Cid::try_from(cid) {
        Ok(c) => c
            .into_v1()
            .map(|v1| v1.to_string())
            .unwrap_or_else(|_| c.to_string()),
        Err(_) => cid.to_string(),
    }
}

/// Whether `a` and `b` name the same content.
pub fn same(a: &str, b: &str) -> bool {
    key(a) == key(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "bafybeibdjhavaqzfimtkey4h5yikxe3y4k3efygimktbyy52aku4sofwfq";
    const V0: &str = "QmQiQD3DNAM65vb6rhPAuCbBUZ27j8AY13mTxk6TnNkEYj";
    /// The same CIDv1 in base58btc, as js-ipfs prints it.
    const V1_B58: &str = "zdj7WXoeaUHDdpgxdu2bSLnmaRk6mDZSfafsNAzdYV8bpK8if";

    #[test]
    fn both_versions_of_one_content_are_one_key() {
        assert!(same(V1, V0));
        assert!(same(V1, V1_B58));
        assert_eq!(key(V0), V1);
        assert_eq!(key(&format!(" {V1}\n")), V1);
        assert!(!same(
            V1,
            "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
        ));
        assert!(same("not-a-cid", "not-a-cid"));
        assert!(!same("not-a-cid", V1));
    }
}
