/*  demo.c - kaizen-demo, the demonstration agent (layer "monitoring")

    Each cycle reads the host's load averages (/proc/loadavg) and memory
    (/proc/meminfo) and publishes them as one metric.batch. It also serves
    "demo.echo": the reply's body is a copy of the request's body. It
    exists so a fresh installation shows real traffic on the bus (README,
    `kaizen monitor`) and so the integration tests exercise the agent
    runtime end to end.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kz_agent.h"
#include "kz_log.h"

#define S_ECHO_SERVICE "demo.echo"

typedef struct {
    double load[3];
    long long mem_total_kb;
    long long mem_available_kb;
} s_host_t;

/* Read the whole (small) procfs file PATH into BUF. 0 / -1 */
static int s_read_file(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return kz_fail("unable to open '%s': %s", path, strerror(errno));
    size_t n = fread(buf, 1, len - 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return kz_fail("unable to read '%s'", path);
    buf[n] = '\0';
    return 0;
}

static int s_read_host(s_host_t *host)
{
    char buf[8192];
    if (s_read_file("/proc/loadavg", buf, sizeof buf) != 0)
        return -1;
    if (sscanf(buf, "%lf %lf %lf", &host->load[0], &host->load[1], &host->load[2]) != 3)
        return kz_fail("unable to parse '/proc/loadavg'");
    if (s_read_file("/proc/meminfo", buf, sizeof buf) != 0)
        return -1;
    host->mem_total_kb = host->mem_available_kb = -1;
    for (char *line = buf; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        long long kb;
        if (sscanf(line, "MemTotal: %lld kB", &kb) == 1)
            host->mem_total_kb = kb;
        else if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1)
            host->mem_available_kb = kb;
        line = next;
    }
    if (host->mem_total_kb < 0 || host->mem_available_kb < 0)
        return kz_fail("unable to find MemTotal and MemAvailable in '/proc/meminfo'");
    return 0;
}

/* Append one {name, value, unit, labels{host}} to the METRICS array */
static int s_metric(kz_msg_t *msg, kz_val_t *metrics, const char *name, double value,
                    const char *unit, const char *hostname)
{
    kz_val_t *m = kz_array_push(msg, metrics);
    if (!m)
        return -1;
    kz_val_set_map(m);
    if (kz_map_put_str(msg, m, "name", name) != 0 ||
        kz_map_put_float(msg, m, "value", value) != 0 || kz_map_put_str(msg, m, "unit", unit) != 0)
        return -1;
    kz_val_t *labels = kz_map_put_map(msg, m, "labels");
    return labels ? kz_map_put_str(msg, labels, "host", hostname) : -1;
}

static int s_cycle(kz_agent_t *agent, void *arg)
{
    (void)arg;
    s_host_t host;
    if (s_read_host(&host) != 0)
        return -1;
    char hostname[256];
    if (gethostname(hostname, sizeof hostname) != 0)
        snprintf(hostname, sizeof hostname, "localhost");
    hostname[sizeof hostname - 1] = '\0';

    kz_msg_t *msg = kz_msg_new("metric.batch");
    if (!msg)
        return kz_fail("out of memory");
    kz_val_t *metrics = kz_map_put_array(msg, kz_msg_body(msg), "metrics");
    if (!metrics || s_metric(msg, metrics, "host.load1", host.load[0], "", hostname) != 0 ||
        s_metric(msg, metrics, "host.load5", host.load[1], "", hostname) != 0 ||
        s_metric(msg, metrics, "host.load15", host.load[2], "", hostname) != 0 ||
        s_metric(msg, metrics, "host.mem_total", (double)host.mem_total_kb * 1024, "bytes",
                 hostname) != 0 ||
        s_metric(msg, metrics, "host.mem_available", (double)host.mem_available_kb * 1024, "bytes",
                 hostname) != 0) {
        kz_msg_destroy(&msg);
        return kz_fail("out of memory");
    }
    kz_info("load %.2f, memory available %lld MiB of %lld MiB", host.load[0],
            host.mem_available_kb / 1024, host.mem_total_kb / 1024);
    return kz_agent_publish(agent, &msg);
}

static int s_on_message(kz_agent_t *agent, kz_delivery_t *delivery, void *arg)
{
    (void)arg;
    if (delivery->kind != KZ_DELIVERY_REQUEST || strcmp(delivery->topic, S_ECHO_SERVICE) != 0)
        return 0;
    /* the runtime answers a failed request with an error reply */
    if (strcmp(kz_msg_type(delivery->msg), S_ECHO_SERVICE) != 0)
        return kz_fail("'%s' wants a %s request, got '%s'", S_ECHO_SERVICE, S_ECHO_SERVICE,
                       kz_msg_type(delivery->msg));
    kz_msg_t *reply = kz_msg_new(S_ECHO_SERVICE);
    if (!reply)
        return kz_fail("out of memory");
    const kz_val_t *body = kz_msg_body_const(delivery->msg);
    kz_val_t *to = kz_msg_body(reply);
    const char *target = kz_msg_target(delivery->msg);
    if (kz_val_copy(reply, to, body) != 0 || (target && kz_msg_set_target(reply, target) != 0)) {
        kz_msg_destroy(&reply);
        return kz_fail("out of memory");
    }
    kz_info("echo for '%s'", kz_msg_src(delivery->msg));
    return kz_bus_reply(kz_agent_bus(agent), delivery, &reply);
}

static int s_setup(kz_agent_t *agent, void *arg)
{
    (void)arg;
    return kz_bus_offer(kz_agent_bus(agent), S_ECHO_SERVICE);
}

int main(int argc, char **argv)
{
    const kz_agent_def_t def = {
        .name = "demo",
        .layer = "monitoring",
        .summary = "demonstration agent: publishes host load and memory, serves demo.echo",
        .setup = s_setup,
        .cycle = s_cycle,
        .on_message = s_on_message,
        .arg = NULL,
    };
    return kz_agent_main(argc, argv, &def);
}
