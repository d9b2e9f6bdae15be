/* A Modbus TCP server written with libmodbus: an independent peer for the driver tests.
 * Usage: libmodbus_server PORT. Prints "ready" once listening; serves until killed.
 * Integers go through libmodbus' MODBUS_SET_* macros. Floats are laid out by hand from
 * their IEEE bits: libmodbus 3.1.6's modbus_set_float_abcd() & co. swap the bytes of
 * each register on little-endian hosts (6.5 comes out 0xD040 0x0000, not 0x40D0 0x0000). */
#include <errno.h>
#include <modbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static uint16_t swap16(uint16_t v) { return (uint16_t)((v << 8) | (v >> 8)); }

/* A float32 into two registers, most significant word first unless word_little. */
static void put_float(uint16_t *dest, float value, int word_little, int byte_little) {
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    uint16_t hi = (uint16_t)(bits >> 16), lo = (uint16_t)(bits & 0xFFFF);
    if (byte_little) { hi = swap16(hi); lo = swap16(lo); }
    dest[0] = word_little ? lo : hi;
    dest[1] = word_little ? hi : lo;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", atoi(argv[1]));
    modbus_mapping_t *map = modbus_mapping_new(16, 16, 64, 16);
    if (ctx == NULL || map == NULL) return 1;
    uint16_t *hr = map->tab_registers;
    put_float(hr + 0, 6.5f, 0, 0);   /* ABCD */
    put_float(hr + 2, -3.25f, 1, 0); /* CDAB */
    put_float(hr + 4, 12.5f, 0, 1);  /* BADC */
    put_float(hr + 6, 100.0f, 1, 1); /* DCBA */
    hr[10] = (uint16_t)(int16_t)-1234;
    MODBUS_SET_INT32_TO_INT16(hr, 12, 4000000000u);
    MODBUS_SET_INT64_TO_INT16(hr, 14, -1099511627783LL);
    hr[20] = 0x4142; hr[21] = 0x4344; /* "ABCD" */
    hr[30] = 1u << 5;
    map->tab_input_registers[3] = 1234;
    map->tab_bits[2] = 1;
    map->tab_input_bits[7] = 1;

    int server = modbus_tcp_listen(ctx, 1);
    if (server < 0) return 1;
    printf("ready\n");
    fflush(stdout);
    uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
    for (;;) {
        modbus_tcp_accept(ctx, &server);
        for (;;) {
            int rc = modbus_receive(ctx, query);
            if (rc > 0) modbus_reply(ctx, query, rc, map);
            else if (rc == -1) break; /* connection closed: accept the next one */
        }
        close(modbus_get_socket(ctx));
    }
}
