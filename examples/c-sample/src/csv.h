/* csv.h - split one CSV line into fields */
#ifndef CSV_H
#define CSV_H

#include <stddef.h>

/* Split LINE into at most MAX fields (malloc'd strings in FIELDS); returns
   the number of fields, or a negative TB_E* code */
int csv_split(const char *line, char **fields, size_t max);
void csv_free(char **fields, size_t n);

#endif
