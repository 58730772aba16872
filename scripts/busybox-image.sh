#!/usr/bin/env bash
# Builds an OCI image archive of busybox from Debian's busybox-static, offline (no registry):
#   scripts/busybox-image.sh OUT.tar [NAME]      (NAME defaults to hull.local/busybox:latest)
# One uncompressed layer (busybox + a link per applet, /etc/passwd and /etc/group), an image
# config, a manifest and an index naming the image for `ctr images import`.
set -euo pipefail
out=$1
name=${2:-hull.local/busybox:latest}
busybox=/bin/busybox
[[ -x $busybox ]] || { echo "hull: $busybox is missing (apt-get install busybox-static)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,dev,etc,proc,sys,tmp,root,run,home/user} "$work/image/blobs/sha256"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
  [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"

blob() { # file → "digest size", stored under blobs/sha256
  local d s
  d=$(sha256sum "$1" | cut -d' ' -f1)
  s=$(stat -c %s "$1")
  cp "$1" "$work/image/blobs/sha256/$d"
  echo "$d $s"
}

tar --numeric-owner --owner=0 --group=0 --sort=name -C "$root" -cf "$work/layer.tar" .
read -r layer layer_size < <(blob "$work/layer.tar")
cat >"$work/config.json" <<JSON
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:$layer"]},"history":[{"created_by":"hull: busybox-static, built offline"}]}
JSON
read -r config config_size < <(blob "$work/config.json")
cat >"$work/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:$layer","size":$layer_size}]}
JSON
read -r manifest manifest_size < <(blob "$work/manifest.json")
cat >"$work/image/index.json" <<JSON
{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest","size":$manifest_size,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"$name","org.opencontainers.image.ref.name":"${name##*:}"}}]}
JSON
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/image/oci-layout"
tar --numeric-owner --owner=0 --group=0 -C "$work/image" -cf "$out" oci-layout index.json blobs
echo "hull: $name → $out" >&2
