/* failrand: an LD_PRELOAD shim whose RAND_bytes always fails, so a test
 * can check that herd refuses to run without random keys instead of
 * going on with a zero key (issue 13 item 9). */
int RAND_bytes(unsigned char *buf, int num);

int RAND_bytes(unsigned char *buf, int num) {
  (void)buf;
  (void)num;
  return 0;
}
