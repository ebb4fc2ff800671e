"""read_frame / write_frame over a real socket pair.

To split a frame across receive calls for certain, the writer sends one piece,
then waits until the reader has drained it from the socket (FIONREAD == 0)
before sending the next one.
"""

import array
import fcntl
import socket
import struct
import termios
import threading

import pytest

from asya_runtime import ClientGone, FrameError, read_frame, set_io_timeout, write_frame
from asya_testkit.wait import wait_for
from asya_testkit.wire import read_until_eof

BIG = 1 << 30


@pytest.fixture
def pair():
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    reader.settimeout(30)  # only guards against a hang
    yield reader, writer
    reader.close()
    writer.close()


def unread_bytes(sock):
    count = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, count, True)
    return count[0]


def send_piecewise(reader, writer, pieces, then_close=False):
    """Send each piece only after the reader consumed the previous one."""

    def run():
        for piece in pieces:
            writer.sendall(piece)
            wait_for(lambda: unread_bytes(reader) == 0, "the reader to consume a piece")
        if then_close:
            writer.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def header(length):
    return struct.pack(">I", length)


def test_whole_frame_in_one_send(pair):
    reader, writer = pair
    body = b'{"payload":"h\xc3\xa9"}'
    writer.sendall(header(len(body)) + body)

    assert read_frame(reader, 4096, BIG) == body


def test_header_split_across_sends(pair):
    reader, writer = pair
    body = b'{"payload":1}'
    sender = send_piecewise(reader, writer, [header(len(body))[:2], header(len(body))[2:] + body])

    assert read_frame(reader, 4096, BIG) == body
    sender.join()


def test_header_split_into_single_bytes_with_chunk_size_1(pair):
    reader, writer = pair
    body = b"[1,2,3]"
    pieces = [bytes([b]) for b in header(len(body))] + [body]
    sender = send_piecewise(reader, writer, pieces)

    assert read_frame(reader, 1, BIG) == body
    sender.join()


def test_body_split_into_single_byte_sends_with_chunk_size_1(pair):
    reader, writer = pair
    body = '{"payload":"ünïcødé"}'.encode()
    sender = send_piecewise(reader, writer, [header(len(body))] + [bytes([b]) for b in body])

    assert read_frame(reader, 1, BIG) == body
    sender.join()


def test_chunk_size_smaller_than_the_header(pair):
    reader, writer = pair
    body = b'{"payload":"abc"}'
    writer.sendall(header(len(body)) + body)

    assert read_frame(reader, 3, BIG) == body


def test_empty_body(pair):
    reader, writer = pair
    writer.sendall(header(0))

    assert read_frame(reader, 4096, BIG) == b""


def test_bytes_after_the_frame_are_not_part_of_it(pair):
    reader, writer = pair
    writer.sendall(header(2) + b"{}" + b"trailing garbage")

    assert read_frame(reader, 4096, BIG) == b"{}"


def test_frame_larger_than_one_socket_buffer(pair):
    reader, writer = pair
    body = bytes(range(256)) * 8192  # 2 MiB, more than a socket buffer holds
    sender = threading.Thread(target=writer.sendall, args=(header(len(body)) + body,), daemon=True)
    sender.start()

    assert read_frame(reader, 65536, BIG) == body
    sender.join()


def test_declared_length_over_the_limit_is_refused_before_the_body_is_read(pair):
    reader, writer = pair
    body = b"x" * 100
    writer.sendall(header(len(body)))
    writer.sendall(body)

    with pytest.raises(FrameError) as raised:
        read_frame(reader, 4, 99)

    assert "100" in str(raised.value) and "ASYA_MAX_MESSAGE_SIZE=99" in str(raised.value)
    assert unread_bytes(reader) == len(body), "no body byte may be read"


def test_over_the_limit_reads_nothing_past_the_first_receive(pair):
    reader, writer = pair
    body = b"x" * 65536
    writer.sendall(header(len(body)) + body)

    with pytest.raises(FrameError):
        read_frame(reader, 4096, 1024)

    assert unread_bytes(reader) >= len(body) + 4 - 4096


def test_huge_declared_length_is_refused_without_allocating_it(pair):
    reader, writer = pair
    writer.sendall(header(0xFFFFFFFF))

    with pytest.raises(FrameError) as raised:
        read_frame(reader, 4096, 128 * 1024 * 1024)

    assert str(0xFFFFFFFF) in str(raised.value)


def test_body_cut_short_is_a_frame_error(pair):
    reader, writer = pair
    writer.sendall(header(10) + b"12345")
    writer.shutdown(socket.SHUT_WR)

    with pytest.raises(FrameError) as raised:
        read_frame(reader, 4096, BIG)

    assert "5 of 10" in str(raised.value)


def test_header_cut_short_is_a_frame_error(pair):
    reader, writer = pair
    writer.sendall(b"\x00\x00")
    writer.shutdown(socket.SHUT_WR)

    with pytest.raises(FrameError) as raised:
        read_frame(reader, 4096, BIG)

    assert "2 of the 4 length bytes" in str(raised.value)


def test_peer_that_closes_without_sending_is_not_a_frame(pair):
    reader, writer = pair
    writer.shutdown(socket.SHUT_WR)

    with pytest.raises(ClientGone):
        read_frame(reader, 4096, BIG)


def test_peer_that_resets_without_sending_is_not_a_frame(pair):
    reader, writer = pair
    # Closing with unread data makes the kernel reset the connection.
    reader.sendall(b"unread by the peer")
    writer.close()

    with pytest.raises(ClientGone):
        read_frame(reader, 4096, BIG)


def test_peer_silent_mid_body_times_out_as_a_frame_error(pair):
    reader, writer = pair
    reader.settimeout(None)  # like an accepted connection: blocking, bounded by the kernel timeout
    set_io_timeout(reader, 0.05)
    writer.sendall(header(10) + b"123")

    with pytest.raises(FrameError) as raised:
        read_frame(reader, 4096, BIG)

    assert "3 of 10" in str(raised.value)


def test_peer_silent_before_the_header_times_out_as_a_frame_error(pair):
    reader, writer = pair
    reader.settimeout(None)  # like an accepted connection: blocking, bounded by the kernel timeout
    set_io_timeout(reader, 0.05)

    with pytest.raises(FrameError):
        read_frame(reader, 4096, BIG)


def test_io_timeout_zero_leaves_the_socket_blocking(pair):
    reader, _ = pair
    set_io_timeout(reader, 0)

    timeval = reader.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.calcsize("ll"))
    assert struct.unpack("ll", timeval) == (0, 0)


@pytest.mark.parametrize(
    "data", [b'{"status":"ok","result":[]}', bytearray(b"{}"), b""], ids=["bytes", "bytearray", "empty"]
)
def test_write_frame_sends_exactly_header_and_body(pair, data):
    reader, writer = pair
    write_frame(writer, data)
    writer.shutdown(socket.SHUT_WR)

    assert read_until_eof(reader) == header(len(data)) + bytes(data)


def test_write_frame_of_a_large_reply_arrives_whole(pair):
    reader, writer = pair
    data = bytes(range(256)) * 16384  # 4 MiB: many times a socket buffer
    received = []
    collector = threading.Thread(target=lambda: received.append(read_until_eof(reader)), daemon=True)
    collector.start()

    write_frame(writer, data)
    writer.shutdown(socket.SHUT_WR)
    collector.join()

    assert received[0] == header(len(data)) + data


class StingySocket:
    """A socket whose sendmsg takes at most `limit` bytes, as one with a nearly full buffer does."""

    def __init__(self, sock, limit):
        self.sock = sock
        self.limit = limit

        self.sendmsg_calls = 0

    def sendmsg(self, buffers):
        self.sendmsg_calls += 1
        return self.sock.send(b"".join(bytes(b) for b in buffers)[: self.limit])

    def sendall(self, data):
        self.sock.sendall(data)


@pytest.mark.parametrize("limit", [1, 4, 9], ids=["inside-header", "header-only", "inside-body"])
def test_write_frame_completes_a_partial_send(pair, limit):
    reader, writer = pair
    data = b'{"status":"ok","result":[]}'

    stingy = StingySocket(writer, limit)

    # small_reply=0: the gathered sendmsg() path that large replies take.
    write_frame(stingy, data, small_reply=0)
    writer.shutdown(socket.SHUT_WR)

    assert read_until_eof(reader) == header(len(data)) + data
    assert stingy.sendmsg_calls == 1
