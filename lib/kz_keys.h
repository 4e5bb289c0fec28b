/*  kz_keys.h - CURVE key pairs for the bus, and the automatic ones

    A key pair NAME is two ZPL certificate files as CZMQ's zcert reads
    them: DIR/NAME.key, the public certificate (0644, safe to share), and
    DIR/NAME.key_secret, the secret one (0600). Both carry the metadata
    name, role (when given), created and created-by; the broker takes a
    client's role from its public certificate in bus.curve.allow_dir
    (proto/PROTOCOL.md 1.5).

    TCP requires CURVE: a config with a tcp:// endpoint that does not say
    bus.curve.enabled gets the automatic keys of STATE/keys
    (kz_config_t.bus.curve.automatic):
      keys/broker.key, broker.key_secret        the broker's pair
      keys/ROLE.key_secret                      orchestrator, agent, operator
      keys/allow/ROLE.key                       their public certificates:
                                                the broker's allow_dir
    STATE/keys and allow/ are 0700. kz_keys_ensure makes them once.
*/
#ifndef KZ_KEYS_H_INCLUDED
#define KZ_KEYS_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#include "kz_config.h"

/* Write a new key pair NAME (a file name: letters, digits, '.', '_', '-')
   into the existing directory DIR: DIR/NAME.key and DIR/NAME.key_secret,
   with ROLE (NULL: none) and CREATED_BY in the metadata. Files are
   created new (O_EXCL, O_NOFOLLOW): an existing one fails with EEXIST.
   When PUBLIC_DIR is not NULL the public certificate goes there instead
   of DIR. The public key (Z85, 41 bytes with its NUL) into PUBKEY when
   not NULL. 0 / -1 with ERRBUF (nothing is left behind) */
int kz_keys_write(const char *dir, const char *name, const char *role, const char *created_by,
                  const char *public_dir, char *pubkey, char *errbuf, size_t errlen);

/* The automatic keys of CFG (bus.curve.automatic): when STATE/keys does
   not exist, make the whole set in a new private directory and rename it
   into place, so two processes doing it at once leave one complete set
   and a reader never sees half of one. Sets *MADE when this call made
   them (MADE may be NULL). 0 (also when CFG is not automatic) / -1 with
   ERRBUF */
int kz_keys_ensure(const kz_config_t *cfg, bool *made, char *errbuf, size_t errlen);

#endif
