"""Reading a WAV file that was cut short inside its last sample frame.

A copy or recording interrupted mid-write can end inside a sample frame. FFmpeg (through torchcodec) then refuses the
whole recording ("Could not push packet to decoder"), while libsndfile and FFmpeg's command line keep every whole
frame. Both decoding routes of the package, `data.audio.load_audio` and the pipeline's, salvage the whole frames this
way and say so. Standard library only: the pipeline ships as remote code and imports it from the model folder.
"""

from __future__ import annotations


def whole_frames_of_cut_wav(data: bytes) -> tuple[bytes, int] | None:
    """
    `(the bytes up to the last whole sample frame, the number of bytes dropped)` of a RIFF/WAVE file whose data chunk
    ends inside a sample frame because the file was cut short; `None` for anything else (not a WAV, a whole data
    chunk, no frame size known).
    """
    if data[:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
        return None
    position, frame_bytes = 12, None
    while position + 8 <= len(data):
        chunk, size = data[position : position + 4], int.from_bytes(data[position + 4 : position + 8], "little")
        body = position + 8
        if chunk == b"fmt " and size >= 16:
            # channels x bytes per sample, as libsndfile reads it: the header's own block_align is sometimes wrong
            # (SPRSound's mono 16-bit files say 4).
            channels = int.from_bytes(data[body + 2 : body + 4], "little")
            bits = int.from_bytes(data[body + 14 : body + 16], "little")
            frame_bytes = channels * ((bits + 7) // 8)
        if chunk == b"data":
            if not frame_bytes or body + size <= len(data):  # no frame size known, or the data chunk is whole
                return None
            end = body + (len(data) - body) // frame_bytes * frame_bytes
            return (data[:end], len(data) - end) if body < end < len(data) else None
        position = body + size + (size & 1)
    return None


__all__ = ["whole_frames_of_cut_wav"]
