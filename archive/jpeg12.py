"""A pydicom decoder plugin for 12-bit JPEG Extended (1.2.840.10008.1.2.4.51), through GDCM.

pydicom's own GDCM plugin refuses 12-bit samples and the plugin that accepts
them (pylibjpeg-libjpeg) is GPL, which pacsweb does not ship. GDCM's JPEG
codec carries IJG's 12-bit build, and called directly, one frame at a time, it
decodes pydicom's 12-bit files to the same values as DCMTK's dcmdjpeg (the
transcoder's tests check it). Monochrome only: no 12-bit colour file was at
hand to check the colour conversion against.
"""

from pydicom import uid

try:
    import gdcm
except ImportError:  # python-gdcm is a dependency; pydicom asks for these when it is missing
    gdcm = None

DECODER_DEPENDENCIES = {uid.JPEGExtended12Bit: ("gdcm>=3.0.10",)}


def is_available(syntax):
    return gdcm is not None and syntax == uid.JPEGExtended12Bit


def decode_frame(src, runner):
    """One frame's JPEG codestream `src` as little endian pixel bytes (pydicom's plugin contract)."""
    if runner.samples_per_pixel != 1:
        raise NotImplementedError("12-bit JPEG Extended colour is not decoded")
    if not 8 < runner.bits_stored <= 12 or runner.bits_allocated != 16:
        raise ValueError(f"{runner.bits_stored} bits stored in {runner.bits_allocated} is not 12-bit JPEG Extended")
    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(src)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetValue(fragments.__ref__())
    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((runner.columns, runner.rows, 1))
    image.SetDataElement(element)
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(
        gdcm.PhotometricInterpretation.GetPIType(str(runner.photometric_interpretation))))
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGExtendedProcess2_4))
    # GDCM sizes its output from the pixel format, which must match the codestream's precision.
    image.SetPixelFormat(gdcm.PixelFormat(1, 16, runner.bits_stored, runner.bits_stored - 1,
                                          runner.pixel_representation))
    buffer = image.GetBuffer()
    if buffer is None:  # how GDCM says the codestream did not decode
        raise ValueError("GDCM cannot decode the JPEG codestream")
    frame = buffer.encode("utf-8", "surrogateescape")  # GDCM hands char* out as str
    if len(frame) != runner.rows * runner.columns * 2:
        # GDCM answers an empty or short buffer, not an exception, when the codestream is bad.
        raise ValueError(f"GDCM decoded {len(frame)} bytes, not a {runner.rows} x {runner.columns} frame")
    return frame
