"""The published weight files GeoSleuth knows, with the SHA-256 each download must have.

Names are ours: `geosleuth models fetch NAME` writes `<models_dir>/NAME.pth`, the path the
configuration's defaults point at. Only files whose hash is pinned here can be fetched; any
other compatible file still loads from a path named in the configuration.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PublishedModel:
    name: str
    kind: str  # cosplace, disk, aliked or lightglue
    url: str
    sha256: str
    size: int | None  # bytes, where the publisher's file size is known
    description: str
    licence: str

    @property
    def filename(self) -> str:
        return f"{self.name}.pth"


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
        ),
        PublishedModel(
            name="lightglue-disk",
            kind="lightglue",
            url="https://github.com/cvg/LightGlue/releases/download/v0.1_arxiv/"
            "disk_lightglue.pth",
            sha256="b5b21d47ea24f2c5e501aec9c91b9716e4c8c3429a4dc1e615c133c4c9378335",
            size=47_631_405,
            description="LightGlue matcher for DISK features",
            licence="Apache-2.0",
        ),
        PublishedModel(
            name="aliked-n16",
            kind="aliked",
            url="https://raw.githubusercontent.com/Shiaoming/ALIKED/"
            "ef4a438ea85cd8c46283c5beb5817fa23db6f692/models/aliked-n16.pth",
            sha256="5be8704840ed662d9d8c561bf7279c222092674e7eb05fd0feab94899e9d82f2",
            size=2_738_091,
            description="ALIKED-N16 keypoints and descriptors",
            licence="BSD-3-Clause",
        ),
        PublishedModel(
            name="lightglue-aliked",
            kind="lightglue",
            url="https://github.com/cvg/LightGlue/releases/download/v0.1_arxiv/"
            "aliked_lightglue.pth",
            sha256="d975e965b105311a6143194852297dff4f02aea5cc2e10cecfed966ca0e22503",
            size=47_632_827,
            description="LightGlue matcher for ALIKED features",
            licence="Apache-2.0",
        ),
    )
}


def published_for_file(filename: str) -> PublishedModel | None:
    """The published model a file in the models directory is named after, if any."""
    return next((m for m in PUBLISHED.values() if m.filename == filename), None)
