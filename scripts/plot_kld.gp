# KL divergence against file size for the quantizations of docs/QUANT.md:
#   gnuplot scripts/plot_kld.gp      (reads docs/data/kld_vs_size.tsv, writes docs/kld_vs_size.png)
set terminal png size 900,600 font ",11" noenhanced
set output "docs/kld_vs_size.png"
set title "kdoc-moe-bf16 on text/test.txt: KL divergence to BF16 against file size"
set xlabel "file size (MiB)"
set ylabel "KLD (log scale)"
set logscale y
set grid
set key top right
set datafile separator "\t"
f = "docs/data/kld_vs_size.tsv"
mib(b) = b / 1048576.0
plot f using (strcol(1) eq "peer" ? mib($3) : NaN):4 with linespoints lw 2 pt 7 title "the peer (llama-quantize + its imatrix)", \
     f using (strcol(1) eq "halo" ? mib($3) : NaN):4 with linespoints lw 2 pt 5 title "halo recipes (halo imatrix)", \
     f using (strcol(1) eq "mix" ? mib($3) : NaN):4 with linespoints lw 2 pt 9 title "halo --target-size (mixed precision by measured KLD)", \
     f using (strcol(1) eq "peer" ? mib($3) : NaN):4:2 with labels offset 0,-1 font ",9" notitle
