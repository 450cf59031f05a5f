#!/bin/sh
# The release steps, kept out of .github/workflows/release.yaml so that they run (and are tested)
# here too: a multi-arch operator image and the Helm chart as an OCI artifact, both named by the
# version's one source, operator/infer_operator/__init__.py (__version__).
#
#   hack/release.sh --dry-run [--owner OWNER] [--tag vX.Y.Z]   package and check; print the pushes
#   hack/release.sh [--owner OWNER] [--tag vX.Y.Z]             the same, then push (the workflow)
#   hack/release.sh --set-version X.Y.Z                        bump the version everywhere it is copied
#
# OWNER: the ghcr.io namespace (GitHub user or organisation). Default: $GITHUB_REPOSITORY_OWNER in
# the workflow, else the owner in the chart's image.repository default. The packaged chart's
# default image.repository is set to ghcr.io/OWNER/infer-operator, so a chart always points at the
# image published with it.
# Environment: HELM (default helm), DOCKER (default docker), OUT (default dist/release).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
chart_src=$root/charts/infer-operator
init=$root/operator/infer_operator/__init__.py
helm=${HELM:-helm}
docker=${DOCKER:-docker}
out=${OUT:-$root/dist/release}
platforms=linux/amd64,linux/arm64

dry_run=false
owner=${GITHUB_REPOSITORY_OWNER:-}
tag=${GITHUB_REF_NAME:-}
new_version=
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry_run=true ;;
    --owner) owner=$2; shift ;;
    --tag) tag=$2; shift ;;
    --set-version) new_version=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

die() { echo "release: $*" >&2; exit 1; }

version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$init")
[ -n "$version" ] || die "no __version__ in $init"

if [ -n "$new_version" ]; then
  echo "$new_version" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$' || die "not a semantic version: $new_version"
  sed -i "s/^__version__ = \".*\"$/__version__ = \"$new_version\"/" "$init"
  sed -i -e "s/^version: .*/version: $new_version/" -e "s/^appVersion: .*/appVersion: \"$new_version\"/" "$chart_src/Chart.yaml"
  echo "version $version -> $new_version in $init and $chart_src/Chart.yaml; now run: make deploy"
  exit 0
fi

chart_field() { sed -n "s/^$1: *\"\{0,1\}\([^\"]*\)\"\{0,1\}$/\1/p" "$chart_src/Chart.yaml"; }
[ "$(chart_field version)" = "$version" ] && [ "$(chart_field appVersion)" = "$version" ] \
  || die "Chart.yaml version/appVersion differ from __version__ $version: hack/release.sh --set-version $version"
if [ -n "$tag" ] && [ "$tag" != "v$version" ]; then
  die "tag $tag does not match the version v$version (operator/infer_operator/__init__.py)"
fi

# The owner: ghcr.io wants it lower-case.
default_repository=$(sed -n '/^image:/,/^[^ ]/s/^  repository: *//p' "$chart_src/values.yaml")
[ -n "$owner" ] || owner=$(echo "$default_repository" | sed -n 's|^ghcr\.io/\([^/]*\)/infer-operator$|\1|p')
[ -n "$owner" ] || die "no --owner and the chart's image.repository ($default_repository) is not ghcr.io/OWNER/infer-operator"
owner=$(echo "$owner" | tr 'A-Z' 'a-z')
repository=ghcr.io/$owner/infer-operator
image=$repository:$version
chart_repo=oci://ghcr.io/$owner/charts

# The chart, with its default image pointing at what this release pushes.
rm -rf "$out" && mkdir -p "$out/src"
cp -R "$chart_src" "$out/src/infer-operator"
sed -i "/^image:/,/^[^ ]/s|^  repository: .*|  repository: $repository|" "$out/src/infer-operator/values.yaml"
"$helm" lint --strict "$out/src/infer-operator" >/dev/null
"$helm" package "$out/src/infer-operator" --version "$version" --app-version "$version" --destination "$out" >/dev/null
package=$out/infer-operator-$version.tgz
[ -f "$package" ] || die "helm package did not write $package"

run() {
  if $dry_run; then echo "would run: $*"; else echo "+ $*"; "$@"; fi
}
echo "version $version: image $image ($platforms), chart $chart_repo/infer-operator:$version"
run "$docker" buildx build --platform "$platforms" --file "$root/Dockerfile" --tag "$image" \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.source=https://github.com/${GITHUB_REPOSITORY:-$owner/infer-operator}" --push "$root"
run "$helm" push "$package" "$chart_repo"
