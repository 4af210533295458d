"""OPERA's committed split and label files, pinned to one commit and checked by SHA-256.

The OPERA benchmark (Zhang et al., NeurIPS 2024, https://github.com/evelyn0414/OPERA) fixes several
of its train/validation/test splits in files committed to its repository. Where such a file exists we
use it instead of re-deriving the split, so our tasks see exactly OPERA's recordings and partitions.

`OperaFiles` looks for each file in local directories first (a checkout of OPERA, or a copy such as
`../shared/data/opera`), then in a local cache, and only then downloads it from the pinned commit (with pooch,
through [`~resp_audio_hf.data.download.fetch_file`]). Every copy, local or downloaded, must match the SHA-256
recorded below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .download import DownloadError, fetch_file, offline_mode
from .file_io import cache_root, sha256_file

OPERA_REPOSITORY = "evelyn0414/OPERA"
OPERA_COMMIT = "3622310e667afb8aa40169050b4dd45de75946a2"
OPERA_RAW_BASE_URL = f"https://raw.githubusercontent.com/{OPERA_REPOSITORY}/{OPERA_COMMIT}"

# Path inside the OPERA repository -> SHA-256 of the file at OPERA_COMMIT.
OPERA_FILES: dict[str, str] = {
    # T7 - ICBHI 2017: official diagnosis per patient and official train/test list.
    "datasets/icbhi/ICBHI_Challenge_diagnosis.txt": "b3948b8d43eb81331fcd954e78c8545d4bc9a04b48762591377cd94f47697e20",
    "datasets/icbhi/ICBHI_challenge_train_test.txt": "e2969285a2f931dce5e8a0a7963d77ec2403fe854955818483efb24e5303b404",
    # Row order OPERA fed to its 20 % validation draw for T7 (optional, reproduces the exact draw).
    "feature/icbhidisease_eval/sound_dir_loc.npy": "d3fe92f3b160990bb4bd4bf8f35ee0b2bccbc737509e19f3cc093f6c2c3cdb14",
    # T10 - KAUH.
    "feature/kauh_eval/sound_dir_loc_subset.npy": "70b3ef85b2b87a5509de1b766062c083e030a525270b620cac462c7884cbb124",
    "feature/kauh_eval/labels_both.npy": "5f9655042ad0212a71037e002a0f50ac811b750272a3586637c610a86747a875",
    "feature/kauh_eval/train_test_split.npy": "f86bd4646603d3c25b23f6344dcdfdda0bcd199f617d63a2d2cc8457e1f195b0",
    # OPERA's subject-disjoint KAUH split (committed, but not the one its linear_eval.py reads).
    "feature/kauh_eval/train_test.npy": "cedc5c773950945f5f3eb41c5d1a38449cc1e9b3ad4b54c003cead37ca53608a",
    # T11 - Respiratory@TR.
    "datasets/copd/Labels.csv": "582eb3877b2e0272af9e7dc53ecfa60c4fbc1d1a9148cd725b03179f111922d4",
    "feature/copd_eval/sound_dir_loc.npy": "8d2cdf80cf98107ce1f2c965a458223165cf773994f1557cb6b28a00dead93de",
    "feature/copd_eval/labels.npy": "d63a50804f85712326b43bfd7921c4962d06836874fd50a65493f37a21858192",
    "feature/copd_eval/train_test_split.npy": "39580a963ab97b299345497ab2a8d60678b7610c5e9834201bfdb7b819955b6c",
    # T5/T6 - CoughVID.
    "datasets/coughvid/metadata_compiled.csv": "8563b4499bc2feaec03aeae17c0bf6b2ecf2c22404dcfc892e57137a042a3dcb",
    "feature/coughvid_eval/label_covid.npy": "9d1096132000d00aa41cf64c90f25da6692872d6fd2564a052f78441f8131335",
    "feature/coughvid_eval/label_gender.npy": "5322f1790e2250c33c5217443786326ff9fea0a5b312729c2f0f96302f1a7991",
    "feature/coughvid_eval/sound_dir_loc_covid.npy": "b4ba9e58cdcb4bdf7733a738d53852cbb0b7f1fab043f84acbbe1c51ddc62222",
    "feature/coughvid_eval/sound_dir_loc_gender.npy": "79130cfb9ff931db93461e67f4380c5ddac633fa34268a92fdabc02426771d07",
    "feature/coughvid_eval/split_covid.npy": "49f8cfd99523587a57fa8dc77da593e4f5a5b44d10c6af51181c8098a71e1fe2",
    "feature/coughvid_eval/split_gender.npy": "dd3763757c0da3d3da30f240d0ddcae56ba230c20ffdc3cbbfe063ba6af6a575",
    # T1/T2 - UK COVID-19 Vocal Audio (OPERA's downsampled, participant-disjoint subset).
    "feature/coviduk_eval/label_cough.npy": "ef925b6730909db6878244596823235f8cc3140f940e508f49d63eef844b725e",
    "feature/coviduk_eval/label_exhalation.npy": "20c07cf023307eb67068859fb78951ae5a29ac10aace897763996cb95c87578b",
    "feature/coviduk_eval/sound_dir_loc_cough.npy": "cf9b1e079a42799635532467fe0bb5d9c0ed00f26843b3c8cc7d2c4965c59472",
    "feature/coviduk_eval/sound_dir_loc_exhalation.npy": "3972b39adb459a8d1c9632545c7d1f8eac737c70c8a753b02188861ea4213d09",
    "feature/coviduk_eval/split_cough.npy": "be79a6d8450a1506683b56f59b1718b29cbff9d76f7b6346fdef755964077602",
    "feature/coviduk_eval/split_exhalation.npy": "40f6c8277f20ebea852be04fe711611124d7128b6f63018498926234cad8969a",
    # T8/T9 - Coswara (shallow cough, participants with both cough recordings).
    "feature/coswara_eval/cough_aligned_filenames_sex_w_cough-shallow.npy": "ab9bf4c0102b3b9ff728fe1677d5380f24b75d2fcee71016ed73b9ec1b3820b7",
    "feature/coswara_eval/cough_aligned_sex_label_cough-shallow.npy": "e67c630ef83af07eafaad656014aacf09a65f590f0e99e06848ad43c42fc7e37",
    "feature/coswara_eval/cough_aligned_filenames_smoker_w_cough-shallow.npy": "61979d477e8e13ded0b8e12e63c0f762c4cdff7d166efcdb1b2f1bb4595a80cb",
    "feature/coswara_eval/cough_aligned_smoker_label_cough-shallow.npy": "2e2a727de3231d724438f71146f007acd8acc9b9e5706dee1dc6c04879c0f137",
    "feature/coswara_eval/google_sex_cough_split.npy": "6b14aa25043a0c487c27f2094d34485703aa16aa625cf8c724f8f0c80a21e3be",
    "feature/coswara_eval/google_smoker_cough_split.npy": "8586f7df07adfca5e0c68517e11740cd604e4b6784627a071ef31b1aa703f0b5",
}


class OperaFileError(RuntimeError):
    """An OPERA split/label file is unavailable or does not match its pinned checksum."""


def default_opera_cache_dir() -> Path:
    """`$RESP_AUDIO_HF_CACHE/opera/<commit>` (default `~/.cache/resp_audio_hf`)."""
    return cache_root() / "opera" / OPERA_COMMIT[:7]


@dataclass
class OperaFiles:
    """Find (or download and cache) OPERA's pinned split files.

    Args:
        local_dirs: directories laid out like the OPERA repository (`datasets/...`, `feature/...`),
            searched in order before the cache.
        cache_dir: where downloaded files are kept; defaults to `default_opera_cache_dir()`.
        offline: never download. Defaults to `True` when `RESP_AUDIO_HF_OFFLINE` or
            `HF_HUB_OFFLINE` is set (see [`~resp_audio_hf.data.download.offline_mode`]).
        base_url: raw-file URL prefix of the pinned commit (tests point it at a loopback server).
    """

    local_dirs: tuple[Path, ...] = ()
    cache_dir: Path | None = None
    offline: bool | None = None
    base_url: str = OPERA_RAW_BASE_URL
    _verified: dict[str, Path] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        self.local_dirs = tuple(Path(d) for d in self.local_dirs if d is not None)
        self.cache_dir = Path(self.cache_dir) if self.cache_dir is not None else default_opera_cache_dir()
        if self.offline is None:
            self.offline = offline_mode() is not None

    @staticmethod
    def _expected(relpath: str) -> str:
        try:
            return OPERA_FILES[relpath]
        except KeyError:
            raise OperaFileError(f"{relpath!r} is not one of the pinned OPERA files (see OPERA_FILES).") from None

    def _candidates(self, relpath: str) -> list[Path]:
        return [d / relpath for d in self.local_dirs] + [self.cache_dir / relpath]

    def _check(self, path: Path, relpath: str) -> Path:
        actual = sha256_file(path)
        expected = self._expected(relpath)
        if actual != expected:
            raise OperaFileError(
                f"{path} does not match OPERA@{OPERA_COMMIT[:7]} (SHA-256 {actual}, expected {expected}). "
                "Replace it with the file from the pinned commit or delete it so it is downloaded again."
            )
        return path

    def path(self, relpath: str) -> Path:
        """Local path of a verified copy of `relpath`, downloading it into the cache if needed."""
        if relpath in self._verified:
            return self._verified[relpath]
        expected = self._expected(relpath)
        for candidate in self._candidates(relpath):
            if candidate.exists():
                self._verified[relpath] = self._check(candidate, relpath)
                return self._verified[relpath]
        url = f"{self.base_url.rstrip('/')}/{relpath}"
        where = (
            f"Put it at one of {', '.join(str(c) for c in self._candidates(relpath))} (a folder laid out like the "
            f"OPERA repository: pass --opera-dir, or use <data_root>/opera); it is {url}."
        )
        if self.offline:
            raise OperaFileError(f"OPERA file {relpath} is not available offline, so it was not downloaded. {where}")
        try:
            self._verified[relpath] = fetch_file(url, self.cache_dir / relpath, expected, offline=False)
        except DownloadError as error:
            raise OperaFileError(f"Could not fetch OPERA file {relpath}: {error} {where}") from error
        return self._verified[relpath]

    def load_npy(self, relpath: str):
        """Load a pinned `.npy` file. Object arrays (CoughVID uuids) need pickle; the SHA-256 check
        above guarantees the bytes are OPERA's, so unpickling them is safe."""
        import numpy as np

        return np.load(self.path(relpath), allow_pickle=True)
