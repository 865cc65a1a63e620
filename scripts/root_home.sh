# Sourced by scripts/dev.sh and scripts/test.sh. As root, pgserver runs postgres as its own OS user and opens
# read permission on every parent directory of its data dir and of its install dir (the venv), so embedded
# Postgres refuses both inside root's home. With the checkout there, this prints the base directory to use
# instead (/var/lib/stablerwa/<checkout name>); otherwise nothing.
rwa_root_home_base() {
  if [ "$(id -u)" = "0" ] && [[ "$PWD/" == "$HOME/"* || "$PWD/" == /root/* ]]; then
    echo "/var/lib/stablerwa/$(basename "$PWD")"
  fi
}
