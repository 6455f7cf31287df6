/*  dfb_config_keys: prints the bridge: key table (dfb_config_keys) one key
    per line, tab-separated: name, type, default ("" = unset), range or
    choices, help. check_keys.py compares it with the example config and
    the README's bridge table, so that neither can drift from the parser. */
#include <stdio.h>

#include "dfb_config.h"

int
main(void)
{
    size_t n;
    const dfb_config_key_t *keys = dfb_config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        const dfb_config_key_t *k = &keys[i];
        printf("%s\t%s\t%s\t", k->name, dfb_config_key_type_name(k->type), k->def);
        if (k->type == DFB_KEY_INT || k->type == DFB_KEY_NUMBER)
            printf("%lld..%lld", k->lo, k->hi);
        for (int c = 0; k->type == DFB_KEY_ENUM && k->choices[c]; c++)
            printf("%s%s", c ? "|" : "", k->choices[c]);
        printf("\t%s\n", k->help);
    }
    return ferror(stdout) ? 1 : 0;
}
