#!/usr/bin/env bash
# Install the Debian packages the test suite and the demo need, when they are missing.
# Each line below: a command that must exist, and the Debian package that provides it.
set -euo pipefail

NEEDED=(
  "openssl openssl"                                   # keys, certificates and signatures checked by openssl
  "curl curl"                                         # a second, independent HTTPS client in the mTLS tests
  "softhsm2-util softhsm2"                            # PKCS#11 master key (SoftHSM2 token)
  "/usr/lib/postgresql/15/bin/initdb postgresql"      # a real PostgreSQL server for the vault tests
  "fusermount3 fuse3"                                 # the crypto filesystem (libfuse3 + fusermount3)
  "slurmctld slurm-wlm"                               # a real Slurm scheduler for the job tests (controller)
  "slurmd slurm-wlm"                                  # ... and its node daemon
  "qsub slurm-wlm-torque"                             # TORQUE's qsub/qstat as Slurm wrappers
  "munged munge"                                      # Slurm's authentication daemon
  "nginx nginx"                                       # NGINX for the deploy/ recipe tests (nginx -t, mTLS proxy)
)

missing=()
for pair in "${NEEDED[@]}"; do
  read -r cmd pkg <<<"$pair"
  if [[ "$cmd" == /* ]]; then [ -x "$cmd" ] || missing+=("$pkg")
  else command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg"); fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages: ${missing[*]} (install them with apt-get as root)" >&2
  exit 1
fi
echo "==> installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
