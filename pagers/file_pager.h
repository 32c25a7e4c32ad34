/*
 * The file pager: a host file is a memory manager (seeds/adaos-virtual-memory.md). Opened
 * on pager_args.fd (its own duplicate is kept), .offset and .size select the data (size 0:
 * to the end of the file), .writable lets data_return write modified pages back.
 */
#ifndef PAGERS_FILE_PAGER_H
#define PAGERS_FILE_PAGER_H

#include "mmu/pager.h"

extern const struct pager_ops file_pager_ops;

#endif
