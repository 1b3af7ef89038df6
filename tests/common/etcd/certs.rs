//! Throwaway certificates for a TLS etcd cluster, made with the `openssl` CLI in the cluster's
//! temp dir: a CA, a server certificate for IP 127.0.0.1 (usable as a client too, since etcd's
//! JSON gateway dials its own gRPC port with it), a client certificate from the same CA, and a
//! "rogue" client certificate from a second CA that the cluster must refuse. P-256 keys, one
//! day of validity: fast to make, enough for a test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::super::output_text;

/// The files a TLS cluster and its clients use.
pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

/// Make every certificate under `dir` (created if missing).
pub fn make(dir: &Path) -> Certs {
    fs::create_dir_all(dir).expect("create the certificate dir");
    let (ca, ca_key) = self_signed_ca(dir, "ca", "kinfra test CA");
    let (rogue_ca, rogue_ca_key) = self_signed_ca(dir, "rogue-ca", "kinfra rogue CA");
    let (server_cert, server_key) = signed(
        dir,
        "server",
        (&ca, &ca_key),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    );
    let (client_cert, client_key) = signed(
        dir,
        "client",
        (&ca, &ca_key),
        "extendedKeyUsage=clientAuth\n",
    );
    let (rogue_cert, rogue_key) = signed(
        dir,
        "rogue",
        (&rogue_ca, &rogue_ca_key),
        "extendedKeyUsage=clientAuth\n",
    );
    Certs {
        ca,
        server_cert,
        server_key,
        client_cert,
        client_key,
        rogue_cert,
        rogue_key,
    }
}

/// Run openssl with `args`, panicking with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (the TLS etcd fixture needs the openssl CLI)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        output_text(&out)
    );
}

const KEY: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

/// A self-signed CA: (certificate, key).
fn self_signed_ca(dir: &Path, name: &str, cn: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (format!("{name}.crt"), format!("{name}.key"));
    let subj = format!("/CN={cn}");
    let mut args = vec!["req", "-x509", "-nodes", "-days", "1", "-subj", &subj];
    args.extend(KEY);
    args.extend(["-keyout", &key, "-out", &cert]);
    openssl(dir, &args);
    (dir.join(cert), dir.join(key))
}

/// A certificate signed by `ca` with the extensions `ext`: (certificate, key).
fn signed(dir: &Path, name: &str, ca: (&Path, &Path), ext: &str) -> (PathBuf, PathBuf) {
    let (cert, key, csr) = (
        format!("{name}.crt"),
        format!("{name}.key"),
        format!("{name}.csr"),
    );
    let ext_file = format!("{name}.ext");
    fs::write(dir.join(&ext_file), ext).expect("write the extensions file");
    let subj = format!("/CN=kinfra test {name}");
    let mut args = vec!["req", "-new", "-nodes", "-subj", &subj];
    args.extend(KEY);
    args.extend(["-keyout", &key, "-out", &csr]);
    openssl(dir, &args);
    let (ca_cert, ca_key) = (ca.0.to_string_lossy(), ca.1.to_string_lossy());
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_cert,
            "-CAkey",
            &ca_key,
            "-set_serial",
            &serial(),
            "-days",
            "1",
            "-extfile",
            &ext_file,
            "-out",
            &cert,
        ],
    );
    (dir.join(cert), dir.join(key))
}

/// A serial number unlikely to repeat between certificates of one run.
fn serial() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("{}", (nanos >> 8) + NEXT.fetch_add(1, Ordering::Relaxed))
}
