/*  keygen.c - `kaizen keygen NAME`: a CURVE key pair for the bus

    Writes DIR/NAME.key (public certificate, safe to share) and
    DIR/NAME.key_secret (secret certificate, mode 0600) with CZMQ zcert,
    in the format the broker's ZAP handler (bus.curve.allow_dir) and
    kz_bus_curve_client read (kz_keys_write, which also makes the
    automatic keys of STATE/keys).
*/
#include "cli.h"

#include "kz_keys.h"

#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char s_usage[] =
    "usage: kaizen keygen NAME [--role ROLE] [--dir DIR] [--force]\n"
    "\n"
    "Write a CURVE key pair for the bus: DIR/NAME.key (public certificate)\n"
    "and DIR/NAME.key_secret (secret certificate, mode 0600), and print the\n"
    "public key.\n"
    "\n"
    "  NAME           letters, digits, '.', '_' and '-' (e.g. broker, host-a)\n"
    "  --role ROLE    the bus role written into the certificate: orchestrator,\n"
    "                 agent or operator (the broker's rules, broker.rules; a\n"
    "                 client certificate without a role is an agent)\n"
    "  --dir DIR      where to write the files (default: the current directory;\n"
    "                 created when missing)\n"
    "  --force        overwrite an existing key pair of that name\n"
    "  -h, --help     this help\n"
    "\n"
    "A client uses its NAME.key_secret as bus.curve.client_cert (or the\n"
    "ROLE_cert of its role: orchestrator_cert, agent_cert, operator_cert);\n"
    "the broker admits it once the client's public NAME.key is copied into\n"
    "the broker's bus.curve.allow_dir. The broker's own key pair is not a\n"
    "client's: its secret file is bus.curve.broker_cert, and clients name its\n"
    "public file in bus.curve.broker_public (never put it in allow_dir).\n"
    "\n"
    "exit codes: 0 written, 1 could not write (or exists without --force), 2 usage\n";

static bool s_name_ok(const char *name)
{
    if (!*name || *name == '.' || strlen(name) > 200)
        return false;
    for (const char *p = name; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static bool s_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static const struct option s_opts[] = {
    {"dir", required_argument, NULL, 'd'},
    {"role", required_argument, NULL, 'r'},
    {"force", no_argument, NULL, 'f'},
    {NULL, 0, NULL, 0},
};
static const struct option *const s_opt_tables[] = {s_opts, NULL};

static int s_run(kz_cli_t *cli, int argc, char **argv)
{
    (void)cli;
    const char *dir = ".", *role = NULL;
    bool force = false;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", s_opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'f':
            force = true;
            break;
        case 'r':
            role = optarg;
            break;
        default:
            return kz_cli_bad_option("keygen", c, argv);
        }
    }
    if (optind >= argc)
        return kz_cli_usage("keygen", "missing NAME");
    if (optind + 1 < argc)
        return kz_cli_usage("keygen", "unexpected argument '%s'", argv[optind + 1]);
    const char *name = argv[optind];
    if (!s_name_ok(name))
        return kz_cli_usage("keygen", "invalid name '%s' (use letters, digits, '.', '_', '-')",
                            name);
    if (!*dir)
        return kz_cli_usage("keygen", "empty --dir");
    if (role && strcmp(role, KZ_ROLE_ORCHESTRATOR) != 0 && strcmp(role, KZ_ROLE_AGENT) != 0 &&
        strcmp(role, KZ_ROLE_OPERATOR) != 0)
        return kz_cli_usage("keygen", "unknown role '%s' (orchestrator, agent or operator)", role);

    char pub[4096], sec[4096];
    int n = snprintf(pub, sizeof pub, "%s/%s.key", dir, name);
    int m = snprintf(sec, sizeof sec, "%s/%s.key_secret", dir, name);
    if (n < 0 || m < 0 || (size_t)m >= sizeof sec)
        return kz_cli_error("keygen", "path too long: '%s'", dir);

    struct stat st;
    if (stat(dir, &st) != 0) {
        if (zsys_dir_create("%s", dir) != 0)
            return kz_cli_error("keygen", "unable to create directory '%s': %s", dir,
                                strerror(errno));
    } else if (!S_ISDIR(st.st_mode)) {
        return kz_cli_error("keygen", "'%s' is not a directory", dir);
    }
    if (!force && (s_exists(pub) || s_exists(sec)))
        return kz_cli_error("keygen", "'%s' already exists (use --force to overwrite)",
                            s_exists(pub) ? pub : sec);
    /* kz_keys_write makes new files only */
    if (force) {
        if (unlink(pub) != 0 && errno != ENOENT)
            return kz_cli_error("keygen", "unable to remove '%s': %s", pub, strerror(errno));
        if (unlink(sec) != 0 && errno != ENOENT)
            return kz_cli_error("keygen", "unable to remove '%s': %s", sec, strerror(errno));
    }

    char key[41], err[PATH_MAX + 256];
    if (kz_keys_write(dir, name, role, "kaizen keygen " KZ_VERSION, NULL, key, err, sizeof err) !=
        0)
        return kz_cli_error("keygen", "%s", err);
    printf("public key: %s\n", key);
    printf("public certificate: %s\n", pub);
    printf("secret certificate: %s (mode 0600, keep it private)\n", sec);
    if (role)
        printf("role: %s\n", role);
    /* the broker's pair is not a client's: its public key goes to the
       clients (bus.curve.broker_public), never into allow_dir */
    bool broker = !role && strcmp(name, "broker") == 0;
    if (broker)
        printf("for the broker: use %s as its bus.curve.broker_cert, and give every\n"
               "client %s as its bus.curve.broker_public (the server key it checks);\n"
               "do not copy it into allow_dir, which holds the clients' public keys\n",
               sec, pub);
    else
        printf("for a client: copy %s into the broker's bus.curve.allow_dir and use\n"
               "%s as its bus.curve.%s_cert (or bus.curve.client_cert)\n",
               pub, sec, role ? role : "ROLE");
    if (!broker && !role)
        printf("(for the broker's own pair, run 'kaizen keygen broker': its public key is\n"
               "the clients' bus.curve.broker_public, never in allow_dir)\n");
    return KZ_EXIT_OK;
}

const kz_cli_cmd_t kz_cmd_keygen = {
    "keygen", "write a CURVE key pair for the bus", s_usage, s_run, false, s_opt_tables, NULL,
};
