// TestSupport.h: declarations of TestSupport-i686.S for the in-kernel tests.
#pragma once
#include <stdint.h>

void test_divide_by_zero(void);
void test_clobber_sse(void);
uint32_t test_sse_survives_interrupt_37(void);
void test_write_to(uint32_t address);
void test_raise_vector_39(void);
