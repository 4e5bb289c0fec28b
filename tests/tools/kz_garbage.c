/*  kz_garbage.c - send malformed traffic to a running kaizen-broker

    kz_garbage PUB SUB ROUTER TAP
        Sends broken events (wrong frame counts, bad topics, bodies that are
        not msgpack maps), broken Majordomo and KZG01 commands (missing
        frames, unknown headers and command bytes, bad delivery ids, long
        names, too many frames), junk on the XPUB endpoints and raw bytes
        that are not ZMTP at all. Checks the answers RFC 7 and the KZG01
        text require (DISCONNECT for commands from unknown workers and
        members, a worker READY twice, a worker sending REQUEST or an
        unknown command byte) and ends with an mmi.service round
        trip on the same connection, so every earlier message has been
        processed when it exits 0. Exit 1 when an expected answer is
        missing.

    kz_garbage --oversize ROUTER SERVICE BYTES
        Sends a normal request to SERVICE (it must be answered), then one
        of BYTES bytes (above bus.max_message_size): exit 0 when the
        broker refused it (no reply within 3 s), 1 when it was served.

    Raw libzmq and POSIX sockets only, seeded so runs are reproducible.
    With $KZ_GARBAGE_CURVE = "SERVER,PUBLIC,SECRET" (Z85 keys: the
    broker's public key and a client key pair) the ZeroMQ sockets speak
    CURVE (a tcp:// broker requires it); the raw bytes stay raw.
*/
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define S_TIMEOUT 10000
#define S_END     ((const char *)0) /* ends s_sendx's frame list */

typedef struct {
    const void *data;
    size_t len;
} s_frame_t;

static void *s_ctx;
static unsigned int s_seed = 12345;

static unsigned char s_rand_byte(void)
{
    s_seed = s_seed * 1103515245u + 12345u;
    return (unsigned char)(s_seed >> 16);
}

static void s_rand_fill(unsigned char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = s_rand_byte();
}

static void *s_socket(int type, const char *endpoint)
{
    void *sock = zmq_socket(s_ctx, type);
    int linger = 2000;
    if (!sock)
        return NULL;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));
    const char *curve = getenv("KZ_GARBAGE_CURVE");
    if (curve && *curve) {
        static const int opts[3] = {ZMQ_CURVE_SERVERKEY, ZMQ_CURVE_PUBLICKEY, ZMQ_CURVE_SECRETKEY};
        for (int i = 0; i < 3; i++, curve += 41) {
            char key[41];
            if (strlen(curve) < 40 || curve[40] != (i < 2 ? ',' : '\0') ||
                (memcpy(key, curve, 40), key[40] = '\0',
                 zmq_setsockopt(sock, opts[i], key, sizeof key) == -1)) {
                fprintf(stderr, "kz_garbage: KZ_GARBAGE_CURVE: expected SERVER,PUBLIC,SECRET\n");
                zmq_close(sock);
                return NULL;
            }
        }
    }
    if (zmq_connect(sock, endpoint) == -1) {
        fprintf(stderr, "kz_garbage: unable to connect to '%s': %s\n", endpoint,
                zmq_strerror(zmq_errno()));
        zmq_close(sock);
        return NULL;
    }
    return sock;
}

static void s_sendv(void *sock, const s_frame_t *frames, size_t n)
{
    for (size_t i = 0; i < n; i++)
        zmq_send(sock, frames[i].data, frames[i].len, i + 1 < n ? ZMQ_SNDMORE : 0);
}

/* Send frames given as NUL-terminated strings, ending with NULL */
static void s_sendx(void *sock, ...)
{
    s_frame_t frames[16];
    size_t n = 0;
    va_list ap;
    va_start(ap, sock);
    const char *s;
    while ((s = va_arg(ap, const char *)) && n < 16) {
        frames[n].data = s;
        frames[n].len = strlen(s);
        n++;
    }
    va_end(ap);
    s_sendv(sock, frames, n);
}

/* Receive one whole message; copy up to 4 frames; -1 on timeout */
static int s_recv(void *sock, int timeout, char frames[4][64], size_t *nframes)
{
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, timeout) <= 0)
        return -1;
    size_t n = 0;
    int more = 1;
    while (more) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, sock, 0) == -1)
            return -1;
        if (n < 4) {
            size_t len = zmq_msg_size(&msg) < 63 ? zmq_msg_size(&msg) : 63;
            memcpy(frames[n], zmq_msg_data(&msg), len);
            frames[n][len] = '\0';
        }
        n++;
        more = zmq_msg_more(&msg);
        zmq_msg_close(&msg);
    }
    *nframes = n;
    return 0;
}

/* Wait for a [""][HEADER][CMD] message, skipping heartbeats */
static int s_expect(void *sock, const char *header, int cmd, const char *what)
{
    for (int tries = 0; tries < 20; tries++) {
        char f[4][64];
        size_t n;
        if (s_recv(sock, S_TIMEOUT, f, &n) == -1)
            break;
        if (n >= 3 && f[0][0] == '\0' && strcmp(f[1], header) == 0 && f[2][0] == cmd)
            return 0;
    }
    fprintf(stderr, "kz_garbage: no %s\n", what);
    return -1;
}

/* Raw bytes that are not ZMTP, straight into the transport */
static void s_raw_junk(const char *endpoint)
{
    int fd = -1;
    if (strncmp(endpoint, "ipc://", 6) == 0) {
        struct sockaddr_un addr;
        memset(&addr, 0, sizeof(addr));
        addr.sun_family = AF_UNIX;
        snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", endpoint + 6);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd != -1 && connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == -1) {
            close(fd);
            fd = -1;
        }
    } else if (strncmp(endpoint, "tcp://", 6) == 0) {
        char host[256];
        snprintf(host, sizeof(host), "%s", endpoint + 6);
        char *colon = strrchr(host, ':');
        if (!colon)
            return;
        *colon = '\0';
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof(hints));
        hints.ai_socktype = SOCK_STREAM;
        if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
            return;
        fd = socket(res->ai_family, SOCK_STREAM, 0);
        if (fd != -1 && connect(fd, res->ai_addr, res->ai_addrlen) == -1) {
            close(fd);
            fd = -1;
        }
        freeaddrinfo(res);
    }
    if (fd == -1) {
        fprintf(stderr, "kz_garbage: raw connect to '%s' failed (ignored)\n", endpoint);
        return;
    }
    unsigned char junk[1024];
    s_rand_fill(junk, sizeof(junk));
    junk[0] = 0xff; /* looks like a ZMTP signature start, then nonsense */
    ssize_t w = write(fd, junk, sizeof(junk));
    (void)w;
    close(fd);
}

static int s_garbage_pub(const char *endpoint)
{
    /* an XPUB sees the broker's subscription, so nothing is sent before the
       broker listens (a PUB would drop it) */
    void *pub = s_socket(ZMQ_XPUB, endpoint);
    if (!pub)
        return -1;
    char f[4][64];
    size_t n;
    if (s_recv(pub, S_TIMEOUT, f, &n) == -1) {
        fprintf(stderr, "kz_garbage: the broker never subscribed on '%s'\n", endpoint);
        zmq_close(pub);
        return -1;
    }
    char longtopic[300];
    memset(longtopic, 't', sizeof(longtopic) - 1);
    longtopic[sizeof(longtopic) - 1] = '\0';
    const char map[] = "\x81\xa1v\x01";
    s_sendx(pub, "garbage.one-frame", S_END);
    s_sendx(pub, "garbage.three", map, "extra", S_END);
    s_sendx(pub, "", map, S_END);
    s_sendx(pub, longtopic, map, S_END);
    s_sendx(pub, "garbage.notmap", "hello", S_END);
    s_sendx(pub, "garbage.empty", "", S_END);
    s_sendx(pub, "garbage.array", "\x92\x01\x02", S_END);
    for (int i = 0; i < 20; i++) {
        unsigned char junk[64];
        s_rand_fill(junk, sizeof(junk));
        junk[0] = 0xc1; /* never a map marker */
        s_frame_t fr[2] = {{"garbage.rand", 12}, {junk, 1 + (size_t)i * 3}};
        s_sendv(pub, fr, 2);
    }
    zmq_close(pub);
    return 0;
}

static void s_garbage_xpub(const char *endpoint)
{
    /* subscription sockets: the broker must read and ignore anything */
    void *xsub = s_socket(ZMQ_XSUB, endpoint);
    if (!xsub)
        return;
    s_sendx(xsub, "\x01garbage", S_END);
    s_sendx(xsub, "\x02what", S_END);
    s_sendx(xsub, "a", "b", "c", S_END);
    s_sendx(xsub, "\x00", S_END); /* empty frame */
    s_sendx(xsub, "\x00garbage", S_END);
    unsigned char junk[200];
    s_rand_fill(junk, sizeof(junk));
    s_frame_t fr = {junk, sizeof(junk)};
    s_sendv(xsub, &fr, 1);
    zmq_close(xsub);
}

static int s_garbage_router(const char *endpoint)
{
    int rc = 0;
    void *d = s_socket(ZMQ_DEALER, endpoint);
    if (!d)
        return -1;
    char longname[300];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    s_sendx(d, "garbage", S_END);
    s_sendx(d, "", S_END);
    s_sendx(d, "", "XXXX01", "a", S_END);
    s_sendx(d, "", "MDPC01", S_END);
    s_sendx(d, "", "MDPC01", "", "body", S_END);
    s_sendx(d, "", "MDPC01", longname, "body", S_END);
    s_sendx(d, "", "MDPW01", S_END);
    s_sendx(d, "", "MDPW01", "\x09", S_END);
    s_sendx(d, "", "MDPW01", "\x01\x01", "svc", S_END);
    s_sendx(d, "", "MDPW01", "\x01", S_END);
    s_sendx(d, "", "MDPW01", "\x01", "", S_END);
    s_sendx(d, "", "KZG01", S_END);
    s_sendx(d, "", "KZG01", "\x01", "g", S_END);
    s_sendx(d, "", "KZG01", "\x01", "g", "p", "abc", S_END);
    s_sendx(d, "", "KZG01", "\x01", "g", "p", "0", S_END);
    s_sendx(d, "", "KZG01", "\x01", longname, "p", S_END);
    s_sendx(d, "", "KZG01", "\x01\x02", "g", "p", S_END);
    /* far too many frames */
    s_frame_t many[100];
    for (int i = 0; i < 100; i++)
        many[i] = (s_frame_t){"x", 1};
    s_sendv(d, many, 100);
    for (int i = 0; i < 20; i++) {
        unsigned char junk[3][40];
        s_frame_t fr[3];
        for (int k = 0; k < 3; k++) {
            s_rand_fill(junk[k], sizeof(junk[k]));
            fr[k] = (s_frame_t){junk[k], 1 + (size_t)(s_rand_byte() % 39)};
        }
        fr[0].len = 0; /* a delimiter, then random "protocol" and data */
        s_sendv(d, fr, 3);
    }

    /* RFC 7: a command from an unregistered worker gets DISCONNECT */
    void *w = s_socket(ZMQ_DEALER, endpoint);
    if (w) {
        s_sendx(w, "", "MDPW01", "\x04", S_END);
        rc |= s_expect(w, "MDPW01", 0x05, "DISCONNECT after a worker HEARTBEAT before READY");
        s_sendx(w, "", "MDPW01", "\x01", "mmi.reserved", S_END);
        rc |= s_expect(w, "MDPW01", 0x05, "DISCONNECT after READY for an mmi.* service");
        s_sendx(w, "", "MDPW01", "\x01", "garbage.svc", S_END);
        s_sendx(w, "", "MDPW01", "\x01", "garbage.svc", S_END);
        rc |= s_expect(w, "MDPW01", 0x05, "DISCONNECT after READY twice");
        /* a registered worker sending REQUEST (broker -> worker only) */
        s_sendx(w, "", "MDPW01", "\x01", "garbage.svc", S_END);
        s_sendx(w, "", "MDPW01", "\x02", "client", "", "body", S_END);
        rc |= s_expect(w, "MDPW01", 0x05, "DISCONNECT after a REQUEST from a worker");
        zmq_close(w);
    }
    /* KZG01: a command from an unknown member gets DISCONNECT */
    void *m = s_socket(ZMQ_DEALER, endpoint);
    if (m) {
        s_sendx(m, "", "KZG01", "\x03", "\x00\x00\x00\x00\x00\x00\x00\x01", S_END);
        rc |= s_expect(m, "KZG01", 0x06, "DISCONNECT after an ACK from an unknown member");
        /* now a real member sends broken commands */
        s_sendx(m, "", "KZG01", "\x01", "garbage.group", "garbage.never.", S_END);
        s_sendx(m, "", "KZG01", "\x03", "1234567", S_END);
        s_frame_t ack[4] = {{"", 0}, {"KZG01", 5}, {"\x03", 1}, {"\0\0\0\0\0\0\0\x63", 8}};
        s_sendv(m, ack, 4); /* unknown delivery id */
        s_sendx(m, "", "KZG01", "\x09", S_END);
        s_sendx(m, "", "KZG01", "\x04", "extra", S_END);
        s_sendx(m, "", "KZG01", "\x06", S_END);
        s_sendx(m, "", "KZG01", "\x05", S_END);
        zmq_close(m);
    }
    /* mmi.service on the first connection: answered only after all of the
       garbage before it was processed. The MDPW01 command 0x09 earlier
       earned a DISCONNECT (RFC 7: unknown command): skip such answers. */
    s_sendx(d, "", "MDPC01", "mmi.service", "garbage.svc", S_END);
    char f[4][64];
    size_t n = 0;
    int got = -1, tries = 0;
    while (got == -1 && tries++ < 20 && s_recv(d, S_TIMEOUT, f, &n) == 0)
        if (n == 4 && strcmp(f[1], "MDPC01") == 0 && strcmp(f[2], "mmi.service") == 0)
            got = 0;
    if (got == -1) {
        fprintf(stderr, "kz_garbage: no mmi.service reply after the garbage\n");
        rc = -1;
    }
    zmq_close(d);
    return rc;
}

static int s_oversize(const char *endpoint, const char *service, size_t bytes)
{
    void *d = s_socket(ZMQ_DEALER, endpoint);
    if (!d)
        return 1;
    char f[4][64];
    size_t n;
    s_sendx(d, "", "MDPC01", service, "small", S_END);
    if (s_recv(d, S_TIMEOUT, f, &n) == -1) {
        fprintf(stderr, "kz_garbage: no reply to a normal request for '%s'\n", service);
        zmq_close(d);
        return 1;
    }
    char *big = malloc(bytes);
    if (!big)
        return 1;
    memset(big, 'x', bytes);
    s_frame_t fr[4] = {{"", 0}, {"MDPC01", 6}, {service, strlen(service)}, {big, bytes}};
    s_sendv(d, fr, 4);
    free(big);
    int rc = s_recv(d, 3000, f, &n) == -1 ? 0 : 1;
    if (rc)
        fprintf(stderr, "kz_garbage: the oversize request was served\n");
    else
        printf("oversize refused\n");
    zmq_close(d);
    return rc;
}

int main(int argc, char **argv)
{
    s_ctx = zmq_ctx_new();
    int rc;
    if (argc == 5 && strcmp(argv[1], "--oversize") == 0) {
        rc = s_oversize(argv[2], argv[3], (size_t)strtoull(argv[4], NULL, 10));
    } else if (argc == 5) {
        rc = 0;
        for (int i = 1; i <= 4; i++)
            s_raw_junk(argv[i]);
        if (s_garbage_pub(argv[1]) == -1)
            rc = 1;
        s_garbage_xpub(argv[2]);
        s_garbage_xpub(argv[4]);
        if (s_garbage_router(argv[3]) != 0)
            rc = 1;
        if (rc == 0)
            printf("garbage sent\n");
    } else {
        fprintf(stderr, "usage: kz_garbage PUB SUB ROUTER TAP\n"
                        "       kz_garbage --oversize ROUTER SERVICE BYTES\n");
        rc = 1;
    }
    zmq_ctx_term(s_ctx);
    return rc;
}
