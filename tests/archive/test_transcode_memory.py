"""Transcoding a large multi-frame instance holds one frame, not the instance.

A 400-frame RLE instance (200 MB once decompressed) is decompressed in a child
process whose peak RSS is compared with its RSS before: the growth stays at a
few frames, so it does not scale with the instance (a 1 GB instance costs the
same), where holding the pixel data would cost its whole size.
"""

import subprocess
import sys
import textwrap

FRAMES = 400
ROWS = COLUMNS = 512  # 16 bits: 512 kB a frame, 200 MB for the instance
MAX_GROWTH_MB = 60

CHILD = textwrap.dedent("""
    import io, os, struct, sys

    import numpy as np
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.pixels import get_encoder
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

    from archive import transcode

    frames, rows, columns, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = RLELossless
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7.2"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    frame = (np.arange(rows * columns, dtype=np.uint32) * 2654435761 % 4096).astype(np.uint16).reshape(rows, columns)
    fragment = get_encoder(RLELossless).encode(frame, rows=rows, columns=columns, samples_per_pixel=1,
                                              bits_allocated=16, bits_stored=16, pixel_representation=0,
                                              photometric_interpretation="MONOCHROME2", number_of_frames=1)
    fragment += b"\\0" * (len(fragment) % 2)
    with open(path, "wb") as out:
        ds.save_as(out, enforce_file_format=True)
        out.write(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF))
        out.write(struct.pack("<HHL", 0xFFFE, 0xE000, 0))
        item = struct.pack("<HHL", 0xFFFE, 0xE000, len(fragment)) + fragment
        for _ in range(frames):
            out.write(item)
        out.write(struct.pack("<HHL", 0xFFFE, 0xE0DD, 0))
    del frame, fragment, item

    def rss_mb():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def peak_mb():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM"))

    # The kernel's high-water mark of this process, reset to the current RSS
    # (ru_maxrss would not do: it keeps the parent's peak across fork and exec).
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    before = rss_mb()
    written = 0
    with open(path, "rb") as stream:
        for chunk in transcode.transcode(stream, ExplicitVRLittleEndian):
            written += len(chunk)
    print(f"{written} {before:.1f} {peak_mb():.1f}")
""")


def test_decompressing_a_large_multiframe_instance_keeps_memory_to_a_few_frames(tmp_path):
    result = subprocess.run([sys.executable, "-c", CHILD, str(FRAMES), str(ROWS), str(COLUMNS), str(tmp_path / "big.dcm")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    written, before, peak = result.stdout.split()
    assert int(written) > FRAMES * ROWS * COLUMNS * 2  # every frame was written out
    growth = float(peak) - float(before)
    assert growth < MAX_GROWTH_MB, f"RSS grew by {growth:.0f} MB while transcoding a {FRAMES}-frame instance"
