/*  kz_wire.h - frame-level constants shared by the broker and the bus client

    The authoritative description is proto/PROTOCOL.md, section "Frames".
    Services speak Majordomo 0.1 (ZeroMQ RFC 7) unchanged; kaizen's own
    extensions (queue groups, tap) use the KZG01 / tap frames below and
    never reuse an MDP command byte on an MDP header.
*/
#ifndef KZ_WIRE_H_INCLUDED
#define KZ_WIRE_H_INCLUDED

/* Majordomo 0.1 (RFC 7) */
#define KZ_MDPC            "MDPC01"
#define KZ_MDPW            "MDPW01"
#define KZ_MDPW_READY      0x01
#define KZ_MDPW_REQUEST    0x02
#define KZ_MDPW_REPLY      0x03
#define KZ_MDPW_HEARTBEAT  0x04
#define KZ_MDPW_DISCONNECT 0x05

/* Queue groups, spoken by a DEALER on the broker's router endpoint:
     member -> broker  ["", "KZG01", JOIN, group, prefix]
     broker -> member  ["", "KZG01", DELIVER, id(8 bytes, big endian), topic, body]
     member -> broker  ["", "KZG01", ACK, ids(n * 8 bytes, big endian)]
     either way        ["", "KZG01", HEARTBEAT]
     member -> broker  ["", "KZG01", LEAVE]       pending deliveries go to others now
     broker -> member  ["", "KZG01", DISCONNECT]  broker forgot us: join again
     member -> broker  ["", "KZG01", NACK, ids(n * 8 bytes, big endian)]
                       not handled: hand them to a member again (up to
                       broker.max_deliveries deliveries, then dropped)  */
#define KZ_GRP            "KZG01"
#define KZ_GRP_JOIN       0x01
#define KZ_GRP_DELIVER    0x02
#define KZ_GRP_ACK        0x03
#define KZ_GRP_HEARTBEAT  0x04
#define KZ_GRP_LEAVE      0x05
#define KZ_GRP_DISCONNECT 0x06
#define KZ_GRP_NACK       0x07
#define KZ_GRP_SYNCED     0x08 /* broker -> publisher: a flush is confirmed */

/* The sync marker a publisher sends on "pub" after its events
   (kz_bus_flush; PROTOCOL.md 1.2a); the broker never forwards it */
#define KZ_SYNC_TOPIC  "kaizen.bus.sync"
#define KZ_SYNC_OK     0 /* SYNCED status: everything before the marker is durable */
#define KZ_SYNC_FAILED 1 /* some durable event could not be logged (log full, I/O) */

/* Tap (PUB socket): [path, name, header, payload frames...]
   path is one of the strings below, name is the topic or service,
   header is a msgpack map (see proto/PROTOCOL.md, "Tap"). */
#define KZ_TAP_EVENT   "event"
#define KZ_TAP_GROUP   "group"
#define KZ_TAP_ACK     "ack"
#define KZ_TAP_REQUEST "request"
#define KZ_TAP_REPLY   "reply"

/* Broker-internal services answered without a worker */
#define KZ_MMI_SERVICE "mmi.service"
#define KZ_MMI_STATS   "mmi.stats"

/* Hard limits every frame-level parser enforces */
#define KZ_TOPIC_MAX 255 /* bytes in a topic, service or group name */

#endif
