#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets from the documented wire
format (core/ports/event.h). Run from the repository root:
    python3 tests/fuzz/make_seeds.py
The seeds are checked in; rerun only when the wire format changes."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def name(v1, v2):
    return struct.pack("<QQ", v1, v2)


def header(event_type, port=(5, 5), from_port=(6, 6), control_seq=0):
    return struct.pack("<II", event_type, 0) + name(*port) + name(*from_port) + struct.pack("<Q", control_seq)


def descriptor(peer_node=(2, 1), peer_port=(7, 7), ref_node=(2, 1), ref_port=(8, 8),
               send=1, receive=1, last=2**64 - 1, closed=0):
    return (name(*peer_node) + name(*peer_port) + name(*ref_node) + name(*ref_port)
            + struct.pack("<QQQB", send, receive, last, closed) + b"\0" * 7)


def user_message(seq=1, ports=0, payload=b"hello"):
    body = struct.pack("<QII", seq, ports, 0)
    body += b"".join(descriptor(peer_port=(20 + i, 1)) for i in range(ports))
    body += b"".join(name(30 + i, 1) for i in range(ports))
    return header(0) + body + payload


EVENTS = {
    "user_message": user_message(),
    "user_message_empty": user_message(payload=b""),
    "user_message_two_ports": user_message(seq=3, ports=2, payload=b"x" * 64),
    "port_accepted": header(1),
    "observe_proxy": header(2, port=(0, 0)) + name(2, 1) + name(5, 5) + name(3, 1) + name(9, 9),
    "observe_proxy_targeted": header(2) + name(2, 1) + name(5, 5) + name(3, 1) + name(9, 9),
    "observe_proxy_ack": header(3, control_seq=1) + struct.pack("<Q", 4),
    "observe_closure": header(4, control_seq=1) + struct.pack("<Q", 2),
    "merge_port": header(5) + name(11, 11) + descriptor(),
    "read_ack_request": header(6, control_seq=1) + struct.pack("<Q", 1),
    "read_ack": header(7, control_seq=1) + struct.pack("<Q", 1),
    "update_previous_peer": header(8, control_seq=1) + name(3, 1) + name(12, 12),
    "bad_type": header(9),
    "bad_peer_closed_byte": header(5) + name(11, 11) + descriptor(closed=2),
    "truncated_header": header(0)[:20],
}


def record(sender, target, event):
    return struct.pack("<BBH", sender, target, len(event)) + event


def main():
    decode_dir = os.path.join(HERE, "corpus", "event_decode")
    accept_dir = os.path.join(HERE, "corpus", "node_accept")
    os.makedirs(decode_dir, exist_ok=True)
    os.makedirs(accept_dir, exist_ok=True)
    for key, event in EVENTS.items():
        with open(os.path.join(decode_dir, key), "wb") as f:
            f.write(event)
        # Aimed at port 2 (peer on P1) from P1, and at the local pair.
        with open(os.path.join(accept_dir, key), "wb") as f:
            f.write(record(0, 2, event) + record(2, 1, event))
    sequences = {
        "messages_in_order": b"".join(
            record(0, 2, user_message(seq=s)) for s in (1, 2, 3)),
        "messages_out_of_order": b"".join(
            record(0, 2, user_message(seq=s)) for s in (3, 1, 2)),
        "closure_then_message": record(0, 2, EVENTS["observe_closure"]) + record(0, 2, user_message(seq=1)),
        "merge_from_allowed_node": record(0, 4, EVENTS["merge_port"]),
        "merge_from_other_node": record(1, 4, EVENTS["merge_port"]),
        "forged_broadcast": record(1, 0xff, EVENTS["observe_proxy"]),
        "port_accepted_wrong_state": record(0, 0x82, EVENTS["port_accepted"]),
    }
    for key, data in sequences.items():
        with open(os.path.join(accept_dir, key), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
