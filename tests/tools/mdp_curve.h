/*  mdp_curve.h - the --curve option of the stock Majordomo peers
    (mdp_client, mdp_worker): raw ZMQ_CURVE_* options, no kaizen code.
    The including file defines S_PROG (its name, for messages).
*/
#ifndef MDP_CURVE_H_INCLUDED
#define MDP_CURVE_H_INCLUDED

#include <stdio.h>
#include <string.h>
#include <zmq.h>

/* --curve SERVER,PUBLIC,SECRET: the broker's public key and this peer's
   key pair, Z85 (40 characters each), as raw ZMQ_CURVE_* options. */
static const char *s_curve;

/* Apply s_curve (when set) to SOCK. 0 / -1 (said on stderr) */
static int s_curve_apply(void *sock)
{
    if (!s_curve)
        return 0;
    static const int opts[3] = {ZMQ_CURVE_SERVERKEY, ZMQ_CURVE_PUBLICKEY, ZMQ_CURVE_SECRETKEY};
    const char *p = s_curve;
    for (int i = 0; i < 3; i++) {
        char key[41];
        if (strlen(p) < 40 || (p[40] != (i < 2 ? ',' : '\0'))) {
            fprintf(stderr, "%s: --curve expects SERVER,PUBLIC,SECRET (Z85 keys)\n", S_PROG);
            return -1;
        }
        memcpy(key, p, 40);
        key[40] = '\0';
        if (zmq_setsockopt(sock, opts[i], key, sizeof key) == -1) {
            fprintf(stderr, "%s: --curve: %s\n", S_PROG, zmq_strerror(zmq_errno()));
            return -1;
        }
        p += 41;
    }
    return 0;
}

#endif
