//! `tls-fallback proxy ca init`: makes the interception CA (its certificate for the apps to
//! trust, its key 0600) and says how to trust it, app by app.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use tls_fallback::HostPattern;

use super::ca::{self, CA_FILE, KEY_FILE};

/// Commands of `tls-fallback proxy` other than running it.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// The local CA that interception (--intercept-ca) mints certificates from.
    #[command(subcommand)]
    Ca(CaCommand),
}

/// `ca` commands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum CaCommand {
    /// Make a CA that can certify only the --allow hosts (X.509 name constraints), and print
    /// how apps trust it.
    Init(InitArgs),
}

/// `ca init`'s arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct InitArgs {
    /// Where to write ca.pem (apps trust it) and ca-key.pem (the issuing key, mode 0600); made
    /// 0700 if missing, else it must be this user's and writable by it alone.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// A host the CA may certify: host, *.suffix or an IP address (ports are ignored: a
    /// certificate names no port). Repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub allow: Vec<String>,
    /// Replace a CA already in DIR (apps must then trust the new ca.pem).
    #[arg(long)]
    pub force: bool,
}

/// Runs a command: exit 0, or 2 with the reason on stderr.
pub fn run(cmd: &Command) -> ExitCode {
    let Command::Ca(CaCommand::Init(args)) = cmd;
    match init(args, SystemTime::now()) {
        Ok(made) => {
            print!("{}", made.instructions());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tls-fallback proxy ca init: error: {e}");
            ExitCode::from(2)
        }
    }
}

/// What `ca init` made.
pub struct Made {
    /// The directory.
    pub dir: PathBuf,
    /// The patterns it covers.
    pub allow: Vec<String>,
}

/// Makes the CA in `args.dir`.
pub fn init(args: &InitArgs, now: SystemTime) -> Result<Made, String> {
    let patterns = args
        .allow
        .iter()
        .map(|p| {
            p.parse::<HostPattern>()
                .map_err(|e| format!("--allow: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let constraints = ca::constraints(&patterns)?;
    make_dir(&args.dir)?;
    let (cert_path, key_path) = (args.dir.join(CA_FILE), args.dir.join(KEY_FILE));
    for p in [&cert_path, &key_path] {
        let there = std::fs::symlink_metadata(p);
        if there.as_ref().is_ok_and(|m| !m.is_file()) {
            return Err(format!("{} is not a regular file", p.display()));
        }
        if !args.force && there.is_ok() {
            return Err(format!(
                "{} exists: {} already holds a CA; --force makes a new one (apps must then \
                 trust the new {CA_FILE})",
                p.display(),
                args.dir.display()
            ));
        }
    }
    let fail = |e: openssl::error::ErrorStack| format!("cannot make the CA: {e}");
    let (root, issuer) = ca::new_ca(&constraints, now).map_err(fail)?;
    let mut key_pem = issuer.key.private_key_to_pem_pkcs8().map_err(fail)?;
    key_pem.extend(issuer.cert.to_pem().map_err(fail)?);
    let root_pem = root.to_pem().map_err(fail)?;
    // Both files are written under new names first, then renamed: a failure before the
    // renames leaves the old CA whole (a key and a certificate that belong together).
    let staged = |p: &Path| {
        let mut s = p.as_os_str().to_owned();
        s.push(".new");
        std::path::PathBuf::from(s)
    };
    let (key_new, cert_new) = (staged(&key_path), staged(&cert_path));
    let written = tls_fallback::write_private_file(&key_new, &key_pem)
        .map_err(|e| format!("cannot write {}: {e}", key_new.display()))
        .and_then(|()| {
            // The certificate is public: every app's user reads it.
            tls_fallback::write_public_file(&cert_new, &root_pem)
                .map_err(|e| format!("cannot write {}: {e}", cert_new.display()))
        })
        .and_then(|()| {
            std::fs::rename(&key_new, &key_path)
                .and_then(|()| std::fs::rename(&cert_new, &cert_path))
                .map_err(|e| format!("cannot put the CA in place in {}: {e}", args.dir.display()))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&key_new);
        let _ = std::fs::remove_file(&cert_new);
    }
    written?;
    Ok(Made {
        dir: args.dir.clone(),
        allow: args.allow.clone(),
    })
}

/// Creates `dir` (mode 0700, parents as needed), or checks the one there ([`ca::check_dir`]).
fn make_dir(dir: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => return ca::check_dir(dir),
        Ok(_) => return Err(format!("{} exists and is not a directory", dir.display())),
        Err(_) => {}
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

impl Made {
    /// What to do next, app by app.
    pub fn instructions(&self) -> String {
        let dir = self.dir.display();
        let ca = self.dir.join(CA_FILE);
        let ca = ca.display();
        let allow: Vec<String> = self.allow.iter().map(|a| format!("--allow {a}")).collect();
        let allow = allow.join(" ");
        format!(
            "Made an interception CA in {dir}:\n\
             \x20 {ca}  the certificate apps trust\n\
             \x20 {dir}/{KEY_FILE}  the key that signs (mode 0600; the proxy's user must own it)\n\
             It can certify only: {list} (X.509 name constraints, in the certificate that \
             signs too, so Java enforces them; and only TLS servers: no mail or client \
             certificates). A stolen key cannot impersonate any other site to apps that check \
             names in the certificate's alternative names; a few also accept a one-label name \
             (\"intranet\") in the common name. For other hosts, make a new CA with --force.\n\
             \n\
             Run the proxy with it:\n\
             \x20 tls-fallback-proxy --intercept-ca {dir} {allow}\n\
             Apps keep their https:// URLs; point them at the proxy and trust the CA:\n\
             \x20 HTTPS_PROXY=http://127.0.0.1:8080 (PHP's curl, Python, Go, reqwest, curl)\n\
             \x20 Debian/Ubuntu, every app that uses the system store:\n\
             \x20   sudo cp {ca} /usr/local/share/ca-certificates/tls-fallback.crt && sudo update-ca-certificates\n\
             \x20 PHP (php.ini; curl.cainfo replaces the default roots, so name the system bundle \
             after update-ca-certificates, or {ca} if PHP reaches nothing else):\n\
             \x20   curl.cainfo = /etc/ssl/certs/ca-certificates.crt\n\
             \x20   openssl.cafile = /etc/ssl/certs/ca-certificates.crt\n\
             \x20   (per handle: CURLOPT_PROXY => 'http://127.0.0.1:8080', CURLOPT_CAINFO)\n\
             \x20 Python requests: REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt, or\n\
             \x20   requests.get(url, proxies={{\"https\": \"http://127.0.0.1:8080\"}}, verify=\"{ca}\")\n\
             \x20 Java: keytool -importcert -noprompt -cacerts -storepass changeit -alias tls-fallback -file {ca}\n\
             \x20   and -Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=8080\n\
             \x20 Node: NODE_EXTRA_CA_CERTS={ca}, with a proxy agent that honours HTTPS_PROXY\n\
             The apps then check the proxy's certificate for each gateway; the proxy checks the \
             gateway's real certificate, on every fallback rung.\n",
            list = self.allow.join(", "),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path, allow: &[&str], force: bool) -> InitArgs {
        InitArgs {
            dir: dir.to_path_buf(),
            allow: allow.iter().map(|s| s.to_string()).collect(),
            force,
        }
    }

    #[test]
    fn writes_a_private_key_and_a_public_certificate_and_never_overwrites_unasked() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let now = SystemTime::now();
        let made = init(&args(&dir, &["gw.example"], false), now).unwrap();
        let mode = |f: &str| {
            let m = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
            m & 0o777
        };
        assert_eq!(mode(KEY_FILE), 0o600);
        assert_eq!(mode(CA_FILE), 0o644);
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let text = made.instructions();
        for want in [
            "update-ca-certificates",
            "curl.cainfo",
            "REQUESTS_CA_BUNDLE",
            "keytool",
        ] {
            assert!(text.contains(want), "{want}: {text}");
        }
        assert!(text.contains("NODE_EXTRA_CA_CERTS"), "{text}");
        let before = std::fs::read(dir.join(KEY_FILE)).unwrap();
        let e = init(&args(&dir, &["gw.example"], false), now)
            .err()
            .unwrap();
        assert!(e.contains("--force"), "{e}");
        assert_eq!(std::fs::read(dir.join(KEY_FILE)).unwrap(), before, "kept");
        init(&args(&dir, &["gw.example"], true), now).unwrap();
        assert_ne!(
            std::fs::read(dir.join(KEY_FILE)).unwrap(),
            before,
            "replaced"
        );
        // What was written loads.
        ca::Ca::load(&dir).unwrap();
    }

    #[test]
    fn refuses_what_would_make_an_unconstrained_or_broken_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let e = init(&args(tmp.path(), &["*"], false), now).err().unwrap();
        assert!(e.contains("any site"), "{e}");
        let e = init(&args(tmp.path(), &[], false), now).err().unwrap();
        assert!(e.contains("--allow"), "{e}");
        let e = init(&args(tmp.path(), &["https://gw/"], false), now)
            .err()
            .unwrap();
        assert!(e.starts_with("--allow"), "{e}");
        let file = tmp.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let e = init(&args(&file, &["gw.example"], false), now)
            .err()
            .unwrap();
        assert!(e.contains("not a directory"), "{e}");
        assert!(
            std::fs::read_dir(tmp.path()).unwrap().count() == 1,
            "nothing written"
        );
    }

    #[test]
    fn a_directory_other_users_can_write_is_refused_and_a_failed_force_keeps_the_old_ca() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = init(&args(&shared, &["gw.example"], false), SystemTime::now())
            .err()
            .unwrap();
        assert!(e.contains("writable by other users"), "{e}");
        assert_eq!(
            std::fs::read_dir(&shared).unwrap().count(),
            0,
            "nothing written"
        );
        // A CA, then a --force that cannot put its certificate in place: the old CA stays.
        let dir = tmp.path().join("ca");
        init(&args(&dir, &["gw.example"], false), SystemTime::now()).unwrap();
        let key = std::fs::read(dir.join(KEY_FILE)).unwrap();
        std::fs::remove_file(dir.join(CA_FILE)).unwrap();
        std::fs::create_dir(dir.join(CA_FILE)).unwrap();
        let e = init(&args(&dir, &["gw.example"], true), SystemTime::now())
            .err()
            .unwrap();
        assert!(e.contains("not a regular file"), "{e}");
        assert_eq!(
            std::fs::read(dir.join(KEY_FILE)).unwrap(),
            key,
            "the key is kept"
        );
    }

    #[test]
    fn a_key_others_can_read_is_refused_at_load() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        init(&args(tmp.path(), &["gw.example"], false), SystemTime::now()).unwrap();
        let key = tmp.path().join(KEY_FILE);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = ca::Ca::load(tmp.path()).err().unwrap();
        assert!(e.contains("chmod 600"), "{e}");
    }
}
