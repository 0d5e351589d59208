//! Test certificates made with openssl (EC P-256, two days): CAs and leaves with the names and
//! extended key usages a test asks for, in one directory. Each test file builds its own set in
//! an `impl Pki { fn new(..) }` of its own with [`Pki::ca`] and [`Pki::leaf`].

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

/// The certificates of one test, in `dir`: `NAME.pem` and `NAME.key` (mode 600).
pub struct Pki {
    /// Where the files are.
    pub dir: PathBuf,
}

/// Run openssl with `args`; panic with its stderr if it fails (the package is openssl).
fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("openssl (install the Debian package openssl): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    pub fn pem(&self, name: &str) -> String {
        self.path(&format!("{name}.pem"))
    }

    pub fn key(&self, name: &str) -> String {
        self.path(&format!("{name}.key"))
    }

    pub fn ca(&self, name: &str, cn: &str) {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &self.key(name),
            "-out",
            &self.pem(name),
            "-days",
            "2",
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
    }

    pub fn leaf(&self, name: &str, ca: &str, cn: &str, san: &str, eku: &str) {
        let csr = self.path(&format!("{name}.csr"));
        let ext = self.path(&format!("{name}.ext"));
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &self.key(name),
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}"),
        ]);
        fs::write(
            &ext,
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
                 extendedKeyUsage={eku}\nsubjectAltName={san}\n"
            ),
        )
        .expect("write extensions");
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &self.pem(ca),
            "-CAkey",
            &self.key(ca),
            "-CAcreateserial",
            "-out",
            &self.pem(name),
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
        fs::set_permissions(self.key(name), fs::Permissions::from_mode(0o600)).expect("chmod");
    }
}
